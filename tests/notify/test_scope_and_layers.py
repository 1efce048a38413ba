"""Where the environment label comes from, and the notify package's layering."""

from __future__ import annotations

import ast
from pathlib import Path

import topup_guard
from topup_guard.config import Settings
from topup_guard.notify.build import scope_of
from topup_guard.notify.note import kubernetes_namespace

NOTIFY = Path(topup_guard.__file__).parent / "notify"


def test_the_environment_defaults_to_the_pods_namespace(tmp_path: Path) -> None:
    ns_file = tmp_path / "namespace"
    ns_file.write_text("payments-prod\n")
    assert kubernetes_namespace({}, ns_file) == "payments-prod"
    assert kubernetes_namespace({"POD_NAMESPACE": "from-env"}, tmp_path / "absent") == "from-env"
    assert kubernetes_namespace({}, tmp_path / "absent") is None


def test_an_explicit_environment_wins_and_the_name_is_optional() -> None:
    explicit = scope_of(Settings(api_key="abcd1234", environment="prod"), {"POD_NAMESPACE": "x"})
    assert explicit.label == "prod · abcd1234"
    named = scope_of(Settings(api_key="abcd1234", account_name="Acme"), {"POD_NAMESPACE": "ns"})
    assert named.label == "ns · Acme (abcd1234)"


def imports_of(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
    return found


def test_only_the_slack_transport_imports_slack_sdk() -> None:
    users = sorted(
        p.relative_to(NOTIFY).as_posix()
        for p in NOTIFY.rglob("*.py")
        if any(n.split(".")[0] == "slack_sdk" for n in imports_of(p))
    )
    assert users == ["channels/slack_transport.py"]


def test_notify_reads_events_and_never_the_engine_the_ledger_or_vonage() -> None:
    allowed = {"notify", "events", "config", "clock", "errors", "retry", "model", "tlsdefer"}
    for path in NOTIFY.rglob("*.py"):
        for name in imports_of(path):
            if name.startswith("topup_guard."):
                assert name.split(".")[1] in allowed, f"{path.name} imports {name}"


def test_channels_do_not_know_each_other_or_the_dispatcher() -> None:
    for path in (NOTIFY / "channels").glob("*.py"):
        own = {f"topup_guard.notify.channels.{path.stem}"}
        for name in imports_of(path) - own:
            if name.startswith("topup_guard.notify."):
                assert name in {
                    "topup_guard.notify.note",
                    "topup_guard.notify.format",
                    "topup_guard.notify.channels.http",
                    "topup_guard.notify.channels.slack_transport",
                }, f"{path.name} imports {name}"


def test_channel_secrets_can_be_read_from_files_and_are_masked(tmp_path: Path) -> None:
    from topup_guard.config import load_settings

    (tmp_path / "hmac").write_text("hmac-from-file\n")
    (tmp_path / "pd").write_text("R0FROMFILE\n")
    settings = load_settings(
        {
            "TOPUP_GUARD_WEBHOOK_URL": "https://ops.example.com/hook?token=t0k",
            "TOPUP_GUARD_WEBHOOK_SECRET_FILE": str(tmp_path / "hmac"),
            "TOPUP_GUARD_PAGERDUTY_ROUTING_KEY_FILE": str(tmp_path / "pd"),
        }
    )
    assert settings.secret("webhook_secret") == "hmac-from-file"
    assert settings.secret("pagerduty_routing_key") == "R0FROMFILE"
    shown = str(settings.masked()) + repr(settings)
    for value in ("hmac-from-file", "R0FROMFILE", "t0k"):
        assert value not in shown
