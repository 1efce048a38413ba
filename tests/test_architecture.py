"""Layering rules that keep the money path reviewable, checked on the source itself."""

from __future__ import annotations

import ast
from pathlib import Path

import topup_guard
from topup_guard import docs

PACKAGE = Path(topup_guard.__file__).parent
README = PACKAGE.parent / "README.md"


def imports_of(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
    return found


def test_the_policy_is_pure() -> None:
    """decide/forecast read no clock and do no I/O, so run, backtest and demo share them."""
    allowed_roots = {"__future__", "dataclasses", "decimal", "enum", "math", "collections",
                     "statistics", "typing", "topup_guard"}  # fmt: skip
    for path in (PACKAGE / "policy").glob("*.py"):
        for name in imports_of(path):
            assert name.split(".")[0] in allowed_roots, f"{path.name} imports {name}"
            if name.startswith("topup_guard."):
                assert name.split(".")[1] in {"policy", "model", "config"}, f"{path.name}: {name}"


def test_only_the_retry_module_imports_tenacity() -> None:
    users = [p.name for p in PACKAGE.rglob("*.py") if any(
        n.split(".")[0] == "tenacity" for n in imports_of(p))]  # fmt: skip
    assert users == ["retry.py"]


def test_errors_are_mapped_at_the_vonage_boundary() -> None:
    """Nothing above vonage/ handles aiohttp client errors: it sees the exception tree only."""
    for path in PACKAGE.rglob("*.py"):
        rel = path.relative_to(PACKAGE).as_posix()
        if rel.startswith(("vonage/", "sim/", "notify/")) or rel in {"health.py"}:
            continue
        source = path.read_text(encoding="utf-8")
        assert "ClientError" not in source, f"{rel} handles aiohttp errors itself"
        assert "aiohttp.Client" not in source, f"{rel} talks HTTP to Vonage outside vonage/"


def test_the_readme_configuration_reference_is_generated_from_the_settings() -> None:
    readme = README.read_text(encoding="utf-8")
    assert docs.render_into(readme) == readme, (
        "stale README configuration reference: python -m topup_guard.docs --write README.md"
    )
