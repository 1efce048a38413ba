"""The proof suite's evidence tally: each module records what it did, one JSON file per run.

Tests call ``tally.add("faults_injected", 3)``; counts are kept per test module and written at
the end of the session to ``tests/prove/.tally.json`` (gitignored). A partial run replaces only
the modules it ran, so the file always holds the latest count of every module.
``python -m tests.prove.tally`` prints it (the README's "Evidence" section is a copy).
"""

from __future__ import annotations

import json
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from pathlib import Path

import pytest

TALLY_PATH = Path(__file__).with_name(".tally.json")


class Tally:
    """Counts for one test module; a thin view on the session's store."""

    def __init__(self, counts: Counter[str]) -> None:
        self._counts = counts

    def add(self, key: str, n: int | float = 1) -> None:
        self._counts[key] += n  # type: ignore[assignment]

    def peak(self, key: str, value: int | float) -> None:
        """Keep the largest value seen (for measurements such as calls per hour)."""
        self._counts[key] = max(self._counts.get(key, 0), value)  # type: ignore[assignment]

    def set(self, key: str, value: int | float) -> None:
        self._counts[key] = value  # type: ignore[assignment]


@pytest.fixture(scope="session")
def _tally_store() -> Iterator[dict[str, Counter[str]]]:
    store: dict[str, Counter[str]] = defaultdict(Counter)
    yield store
    if not store:
        return
    try:
        old = json.loads(TALLY_PATH.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        old = {}
    modules = dict(old.get("modules", {}))
    modules.update({name: dict(sorted(c.items())) for name, c in store.items()})
    data = {"written_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "modules": modules}
    TALLY_PATH.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")


@pytest.fixture
def tally(_tally_store: dict[str, Counter[str]], request: pytest.FixtureRequest) -> Iterator[Tally]:
    """Counts recorded under the calling test's module name (``test_faults``, ...)."""
    module = request.module.__name__.rsplit(".", 1)[-1]
    counts = _tally_store[module]
    counts["tests_passed"] += 0  # the key exists even if the test fails before counting
    yield Tally(counts)
    rep = getattr(request.node, "rep_call", None)
    if rep is not None and rep.passed:
        counts["tests_passed"] += 1


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> object:
    """Keep the call phase's report on the item, so ``tally`` can count passed tests."""
    rep = yield
    if call.when == "call":
        item.rep_call = rep  # type: ignore[attr-defined]
    return rep
