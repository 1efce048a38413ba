"""The condition gauge follows the replica's role: driven by a real Engine on a virtual clock."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest

from topup_guard.backtest import InProcessAccount, SampledClock
from topup_guard.config import DEMO_API_KEY, DEMO_API_SECRET, DEMO_TRX, load_settings
from topup_guard.engine import Engine
from topup_guard.events import Condition, ConditionsChanged, Fanout, Recorder
from topup_guard.ledger.sqlite import SqliteLedger
from topup_guard.sim.account import SimAccount
from topup_guard.sim.scenario import Scenario
from topup_guard.sim.spend import Phase, SpendProfile
from topup_guard.telemetry import Telemetry, setup_telemetry

from .conftest import make_poll


class Lease:
    """A coordinator whose lease the test hands over: healthy, spending only while ``held``."""

    def __init__(self) -> None:
        self.held = True

    @property
    def holder(self) -> str:
        return "this-replica"

    @property
    def epoch(self) -> int:
        return 1

    def may_spend(self) -> bool:
        return self.held

    @property
    def healthy(self) -> bool:
        return True

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None


@pytest.fixture
def tel() -> Iterator[Telemetry]:
    telemetry = setup_telemetry(environ={})
    yield telemetry
    telemetry.shutdown(timeout=2.0)


def active_conditions(tel: Telemetry) -> set[str]:
    found = re.findall(
        r'^topup_guard_condition\{condition="(\w+)"\} 1$', tel.render_prometheus(), re.M
    )
    return set(found)


def engine(
    tmp_path: Path, tel: Telemetry, lease: Lease, recorder: Recorder
) -> tuple[Engine, SampledClock]:
    # Auto-reload off, balance under the floor: low_balance and autoreload_disabled while it leads.
    account = SimAccount(
        api_key=DEMO_API_KEY, api_secret=DEMO_API_SECRET, trx=DEMO_TRX,
        balance=Decimal("5"), auto_reload=False, topup_amount=Decimal("50"),
        autoreload_threshold=Decimal("5"), message_price=Decimal("0.01"),
        spend=SpendProfile((Phase(0, 1e9, Decimal("0.001")),)),
    )  # fmt: skip
    clock = SampledClock(account)
    api = InProcessAccount(account, clock, Scenario.from_dict(
        {"initial_balance": 5, "topup_amount": 50, "autoreload_threshold": 5}))  # fmt: skip
    settings = load_settings({
        "VONAGE_API_KEY": DEMO_API_KEY, "VONAGE_API_SECRET": DEMO_API_SECRET,
        "TOPUP_GUARD_TRX": DEMO_TRX, "TOPUP_GUARD_STATE_PATH": str(tmp_path / "ledger.db"),
        "TOPUP_GUARD_MIN_BALANCE": "10",
    })  # fmt: skip
    built = Engine(
        api=api, ledger=SqliteLedger(settings.state_path, account=DEMO_API_KEY), clock=clock,
        settings=settings, sink=Fanout([tel.sink, recorder]), coordinator=lease,
    )  # fmt: skip
    return built, clock


async def test_a_replica_that_loses_the_lease_stops_reporting_the_conditions_it_announced(
    tmp_path: Path, tel: Telemetry
) -> None:
    lease, recorder = Lease(), Recorder()
    guard, clock = engine(tmp_path, tel, lease, recorder)

    await guard.run(asyncio.Event(), until=clock.now() + 300)
    assert {"low_balance", "autoreload_disabled"} <= active_conditions(tel)

    lease.held = False  # another replica announces from now on
    announced = len(recorder.of(ConditionsChanged))
    await guard.run(asyncio.Event(), until=clock.now() + 300)

    assert len(recorder.of(ConditionsChanged)) == announced, "a watcher announces nothing"
    assert active_conditions(tel) == set()


def test_a_replica_that_announces_every_cycle_keeps_its_conditions(tel: Telemetry) -> None:
    for _ in range(3):
        tel.sink.emit(make_poll())
        tel.sink.emit(ConditionsChanged(wall=1.0, active={Condition.BREAKER_OPEN: "open"}))
        assert active_conditions(tel) == {"breaker_open"}
