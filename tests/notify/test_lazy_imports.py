"""A guard without notifications never imports slack_sdk or the other channels' code.

Measured in a fresh interpreter that builds the guard exactly as ``run`` does (``build_guard``):
slack_sdk costs about 5 MB of resident memory in a process that is meant to stay small.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from topup_guard.config import DEMO_API_KEY, DEMO_API_SECRET, DEMO_TRX

PROBE = """
import json, resource, sys
from topup_guard.app import build_guard
from topup_guard.config import load_settings
guard = build_guard(load_settings(json.loads(sys.argv[1])))
print(json.dumps({
    "channels": guard.notifier.channels,
    "modules": sorted(m for m in sys.modules if m.split(".")[0] == "slack_sdk"
                      or m.startswith("topup_guard.notify.channels.")),
    "maxrss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
}))
"""


def built(tmp_path: Path, **extra: str) -> dict[str, object]:
    env = {
        "VONAGE_API_KEY": DEMO_API_KEY,
        "VONAGE_API_SECRET": DEMO_API_SECRET,
        "TOPUP_GUARD_TRX": DEMO_TRX,
        "TOPUP_GUARD_STATE_PATH": str(tmp_path / "ledger.db"),
        "TOPUP_GUARD_HEALTH_PORT": "0",
        "OTEL_SDK_DISABLED": "true",
        **extra,
    }
    out = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(env)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    result: dict[str, object] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def test_a_guard_without_notifications_imports_no_channel_code(tmp_path: Path) -> None:
    bare = built(tmp_path)
    assert bare["channels"] == []
    assert bare["modules"] == []


def test_each_configured_channel_imports_only_its_own_code(tmp_path: Path) -> None:
    slack = built(tmp_path, TOPUP_GUARD_SLACK_WEBHOOK_URL="http://127.0.0.1:9/services/T/B/X")
    assert slack["channels"] == ["slack"]
    modules = slack["modules"]
    assert isinstance(modules, list)
    assert "slack_sdk" in modules
    assert "topup_guard.notify.channels.webhook" not in modules
    hook = built(tmp_path, TOPUP_GUARD_WEBHOOK_URL="http://127.0.0.1:9/hook")
    assert hook["channels"] == ["webhook"]
    assert hook["modules"] == [
        "topup_guard.notify.channels.http",
        "topup_guard.notify.channels.webhook",
    ]
