"""The fleet loop's cycle over the in-process simulator: what the primary is asked to hold."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from topup_guard.backtest import SampledClock, _SilentTracer, guard_settings
from topup_guard.config import DEMO_API_KEY, DEMO_API_SECRET, DEMO_TRX
from topup_guard.coordination import SoleGuard
from topup_guard.engine import Engine
from topup_guard.events import Recorder
from topup_guard.fleet.guard import FleetGuard
from topup_guard.fleet.rules import parse_fleet
from topup_guard.fleet.transfer import SafeTransfer
from topup_guard.fleet.transfer_ledger import SqliteTransferLedger
from topup_guard.ledger.sqlite import SqliteLedger
from topup_guard.policy.decide import PolicyParams
from topup_guard.sim.account import SimAccount
from topup_guard.sim.fleet import InProcessFleet
from topup_guard.sim.scenario import Scenario

RULES = {"defaults": {"floor": 8, "transfer_amount": 10}}


class Fleet:
    """A real FleetGuard (primary engine, SafeTransfer, SQLite ledgers) on a virtual clock."""

    def __init__(self, subs: list[dict[str, Any]]) -> None:
        scenario = Scenario.from_dict({
            "initial_balance": "100", "topup_amount": "50", "autoreload_threshold": "0",
            "topup_latency_s": 0, "balance_latency_s": 0, "subaccounts": subs,
        })  # fmt: skip
        self.account = SimAccount.from_scenario(
            scenario, api_key=DEMO_API_KEY, api_secret=DEMO_API_SECRET, trx=DEMO_TRX
        )
        self.clock = SampledClock(self.account)
        settings = guard_settings(scenario, {"poll_interval": "5", "poll_min": "1",
                                             "min_balance": "10", "min_headroom": "0"})  # fmt: skip
        api = InProcessFleet(self.account, self.clock)
        self.ledger = SqliteLedger(":memory:", account=DEMO_API_KEY)
        self.transfers = SqliteTransferLedger(":memory:")
        sink = Recorder()
        primary_sink = FleetGuard.primary_sink(sink)
        primary = Engine(api=api, ledger=self.ledger, clock=self.clock, settings=settings,
                         sink=primary_sink, tracer=_SilentTracer(),
                         account_label=DEMO_API_KEY)  # fmt: skip
        safe = SafeTransfer(api, self.transfers, SoleGuard(), self.clock,
                            primary_key=DEMO_API_KEY, tracer=_SilentTracer())  # fmt: skip
        self.guard = FleetGuard(
            api=api, primary=primary, primary_sink=primary_sink, transfers=safe,
            ledger=self.transfers, rules=parse_fleet(RULES, "test"), clock=self.clock, sink=sink,
            params=PolicyParams.from_settings(settings),
            windows=(settings.rate_window_short, settings.rate_window_long),
            tracer=_SilentTracer(),
        )  # fmt: skip

    async def cycles(self, n: int) -> None:
        for _ in range(n):
            self.clock.advance(await self.guard.cycle())

    async def close(self) -> None:
        await self.transfers.close()
        await self.ledger.close()


@pytest.fixture
async def fleets() -> AsyncIterator[list[Fleet]]:
    made: list[Fleet] = []
    yield made
    for fleet in made:
        await fleet.close()


async def test_a_suspended_subaccount_below_its_floor_adds_nothing_to_the_primarys_reserve(
    fleets: list[Fleet],
) -> None:
    # The control: the same account not suspended is funded (and counted while it waits).
    funded = Fleet([{"api_key": "low00001", "balance": "3"}])
    fleets.append(funded)
    await funded.cycles(3)
    assert [tr.to_key for tr in funded.account.transfers] == ["low00001"]

    fleet = Fleet([{"api_key": "susp0001", "balance": "3", "suspended": True}])
    fleets.append(fleet)
    await fleet.cycles(3)
    assert fleet.account.transfers == []  # a suspended account cannot send: money would sit
    assert fleet.guard.primary.reserve == 0
    assert "suspended" in fleet.guard.accounts["susp0001"].last_action
