"""Helpers for the alert rule and dashboard tests: the tools they need, PromQL metric names, and
the metric names a real ``topup-guard run`` exports on ``/metrics``."""

from __future__ import annotations

import re
import shutil
from decimal import Decimal
from pathlib import Path

import pytest

from tests.run.guardproc import GuardProcess, free_port, get, guard_env, until
from tests.simctl import sim_post
from topup_guard.sim import RunningSimulator

ROOT = Path(__file__).resolve().parents[2]
HELM = ROOT / ".tools" / "helm"


def require_helm() -> Path:
    """The helm binary, or a failure that says how to get it (never a silent skip)."""
    if not HELM.exists():
        pytest.fail(
            "helm not found at .tools/helm: run scripts/get-helm.sh (make check-deploy does)"
        )
    return HELM


def require_promtool() -> str:
    """The promtool binary, or a failure that says how to install it (never a silent skip)."""
    found = shutil.which("promtool")
    if found is None:
        pytest.fail(
            "promtool not found: install it with `apt-get install -y prometheus` (Debian's "
            "package brings promtool; .ci/run installs it)"
        )
    return found


# --- PromQL --------------------------------------------------------------------------------------
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"' + r"|'(?:[^'\\]|\\.)*'")
_MATCHERS = re.compile(r"\{[^{}]*\}")
_RANGE = re.compile(r"\[[^\]]*\]")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_VARIABLE = re.compile(r"\$\{?\w+\}?")
_IDENT = re.compile(r"(?<![\w:.])([a-zA-Z_:][a-zA-Z0-9_:]*)\b(?!\s*\()")
_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or",
             "unless", "offset", "inf", "nan", "atan2"}  # fmt: skip


def metric_names(expr: str) -> set[str]:
    """Every metric name an expression selects (functions, labels and keywords left out)."""
    text = _STRING.sub('""', expr)
    text = _MATCHERS.sub("", text)
    text = _RANGE.sub("", text)
    text = _GROUPING.sub("", text)
    text = _VARIABLE.sub("", text)
    return {name for name in _IDENT.findall(text) if name.lower() not in _KEYWORDS}


# --- what the worker exports ---------------------------------------------------------------------
_SAMPLE_NAME = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)[{ ]")


def exposition_names(text: str) -> set[str]:
    """Metric names of every sample line (histograms give their _bucket/_sum/_count)."""
    return {m.group(1) for line in text.splitlines() if (m := _SAMPLE_NAME.match(line))}


# Only present once something happened: spend seen (forecast), a top-up made, a call timed.
_NEEDS_ACTIVITY = (
    "topup_guard_time_to_exhaustion_seconds",
    "topup_guard_last_topup_timestamp_seconds",
    "topup_guard_api_call_duration_seconds_bucket",
    "topup_guard_spend_rate_eur_per_second",
)


# Fleet mode's, once a cycle has listed the subaccounts and one was funded by transfer.
_FLEET_ACTIVITY = (
    "topup_guard_account_balance_eur",
    "topup_guard_transfers_total",
    "topup_guard_transferred_eur_total",
    "topup_guard_fleet_list_calls_total",
)


async def worker_metric_names(
    sim: RunningSimulator, state_dir: Path, *, fleet: bool = False
) -> set[str]:
    """Run the real worker against the simulator until it has spent, polled and topped up (in
    fleet mode also listed its subaccounts and funded one); return the metric names its
    ``/metrics`` serves."""
    await sim_post(sim, "/_sim/control", {"balance": "5", "spend_rate": "0.01"})
    port = free_port()
    # OTel on (the guard_env default turns it off) with no exporter: /metrics only.
    extra = {"OTEL_SDK_DISABLED": "false"}
    needs = set(_NEEDS_ACTIVITY)
    if fleet:
        sim.account.add_subaccount("sub00001", name="Customer 1", balance=Decimal(6))
        await sim_post(sim, "/_sim/subaccounts/sub00001", {"spend_rate": "0.2"})
        (state_dir / "fleet.toml").write_text("[defaults]\nfloor = 5\ntransfer_amount = 10\n")
        extra["TOPUP_GUARD_FLEET_FILE"] = str(state_dir / "fleet.toml")
        needs |= set(_FLEET_ACTIVITY)
    env = guard_env(sim, state_dir / "ledger.db", health_port=port, **extra)
    guard = await GuardProcess.start(env)
    text = ""

    async def scraped_everything() -> bool:
        nonlocal text
        code, text = await get(f"http://127.0.0.1:{port}/metrics")
        return code == 200 and needs <= exposition_names(text)

    try:
        await guard.event("guard_started")
        await until(scraped_everything, timeout=20)
    finally:
        code, _ = await guard.terminate()
    assert code == 0, guard.output
    return exposition_names(text)
