"""``topup-guard explain`` against a running guard's ``/status`` (real engine, real HTTP server)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path

import pytest

from topup_guard import retry
from topup_guard.backtest import InProcessAccount, SampledClock
from topup_guard.cli import main
from topup_guard.config import DEMO_API_KEY, DEMO_API_SECRET, DEMO_TRX, load_settings
from topup_guard.engine import Engine
from topup_guard.events import Recorder
from topup_guard.health import HealthServer
from topup_guard.ledger.sqlite import SqliteLedger
from topup_guard.sim.account import SimAccount
from topup_guard.sim.scenario import Scenario
from topup_guard.sim.spend import Phase, SpendProfile
from topup_guard.status import GuardStatus


@pytest.fixture
async def guard_status(tmp_path: Path) -> AsyncIterator[str]:
    """A guard that ran 30 simulated minutes of steady spend with its hourly cap at 1, so its
    last decision is blocked by the cap; its /status served on a free port."""
    retry.set_testing(True)
    account = SimAccount(
        api_key=DEMO_API_KEY,
        api_secret=DEMO_API_SECRET,
        trx=DEMO_TRX,
        balance=Decimal("30"),
        topup_amount=Decimal("20"),
        autoreload_threshold=Decimal("1"),
        spend=SpendProfile((Phase(0, 1e9, Decimal("0.05")),)),
        message_price=Decimal("0.01"),
    )
    clock = SampledClock(account)
    scenario = Scenario.from_dict(
        {
            "initial_balance": 30,
            "topup_amount": 20,
            "autoreload_threshold": 1,
            "topup_latency_s": 1,
            "balance_latency_s": 0.2,
        }
    )
    settings = load_settings(
        {
            "VONAGE_API_KEY": DEMO_API_KEY,
            "VONAGE_API_SECRET": DEMO_API_SECRET,
            "TOPUP_GUARD_TRX": DEMO_TRX,
            "TOPUP_GUARD_STATE_PATH": str(tmp_path / "ledger.db"),
            "TOPUP_GUARD_MAX_TOPUPS_PER_HOUR": "1",
            "TOPUP_GUARD_TOPUP_AMOUNT": "20",
        }
    )
    status = GuardStatus()
    ledger = SqliteLedger(settings.state_path, account=DEMO_API_KEY)
    engine = Engine(
        api=InProcessAccount(account, clock, scenario),
        ledger=ledger,
        clock=clock,
        settings=settings,
        sink=Recorder(),
        status=status,
    )
    await engine.run(asyncio.Event(), until=1800.0)
    server = HealthServer(status, clock, port=0, poll_interval=settings.poll_interval)
    await server.start()
    try:
        yield f"http://127.0.0.1:{server.port}/status"
    finally:
        await server.stop()
        await ledger.close()
        retry.set_testing(False)


async def test_explain_shows_the_last_decision_with_its_inputs(
    guard_status: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code = await asyncio.to_thread(main, ["explain", "--url", guard_status])
    out = capsys.readouterr().out
    assert code == 0
    lines = out.splitlines()
    assert lines[0].startswith("Decision: ")
    assert "blocked by:     caps" in out
    for label in ("balance:", "spend rate:", "dry in:", "caps used:", "breaker:"):
        assert any(line.strip().startswith(label) for line in lines), label
    assert "1 top-ups in the last hour" in out
    assert "Last top-up: #1 succeeded" in out


async def test_explain_json_is_the_status_document(
    guard_status: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code = await asyncio.to_thread(main, ["explain", "--url", guard_status, "--json"])
    data = json.loads(capsys.readouterr().out)
    assert code == 0
    assert data["source"] == "status"
    assert data["status"]["decision"]["blocked_by"] is not None
    assert data["status"]["caps_used"]["topups_last_hour"] == 1
