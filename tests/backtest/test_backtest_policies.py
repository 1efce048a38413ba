"""The backtest: the guard is the real Engine, it sees only balances, and the report is exact."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import pytest

import topup_guard.backtest as bt
from tests.backtest.helpers import scenario, steady_rows, trace
from topup_guard.backtest import backtest, min_topups
from topup_guard.clock import VirtualClock
from topup_guard.config import DEMO_API_KEY
from topup_guard.engine import Engine
from topup_guard.events import Recorder
from topup_guard.ledger.sqlite import SqliteLedger
from topup_guard.model import Balance

D = Decimal
HOUR_TRACE = trace(steady_rows(seconds=3600))  # 180 EUR of demand in an hour


def test_guard_keeps_demand_served_where_vonage_alone_fails() -> None:
    report = backtest(scenario(), HOUR_TRACE)
    guard, vonage = report.policies["guard"], report.policies["autoreload_only"]
    assert vonage.failed_spend > 0
    assert vonage.failed_events > 0
    assert guard.failed_spend == 0
    assert guard.failed_events == 0
    assert guard.exhausted_seconds == 0
    assert guard.topups >= report.min_topups == 3


def test_guard_is_the_real_engine(monkeypatch: pytest.MonkeyPatch) -> None:
    built: list[Engine] = []
    real_init = Engine.__init__

    def spy(self: Engine, **kwargs: object) -> None:
        real_init(self, **kwargs)  # type: ignore[arg-type]
        built.append(self)

    monkeypatch.setattr(Engine, "__init__", spy)
    report = backtest(scenario(), HOUR_TRACE, {"poll_min": "7"})
    assert len(built) == 1
    assert isinstance(built[0]._api, bt.InProcessAccount)
    assert built[0].params.poll_min == 7.0  # the --set override reached the engine
    assert built[0].status.last_topup is not None  # it acted, and the account saw it
    assert report.policies["guard"].topups > 0


class RecordingAccount(bt.InProcessAccount):
    """Records what the guard was told (balances) and what it did (top-ups), with times."""

    reads: list[tuple[float, Balance]]
    topup_times: list[float]

    async def get_balance(self) -> Balance:
        balance = await super().get_balance()
        self.reads.append((self._clock.now(), balance))
        return balance

    async def top_up(self, trx: str) -> None:
        self.topup_times.append(self._clock.now())
        await super().top_up(trx)


class ScriptedAccount:
    """No trace, no account model: only the balances a recorded run was shown, in order."""

    def __init__(self, clock: VirtualClock, reads: list[tuple[float, Balance]], latency: float):
        self._clock, self._reads, self._latency = clock, list(reads), latency
        self.topup_times: list[float] = []

    async def get_balance(self) -> Balance:
        await self._clock.sleep(self._latency)
        _, balance = self._reads.pop(0)
        return balance

    async def top_up(self, trx: str) -> None:
        self.topup_times.append(self._clock.now())
        await self._clock.sleep(2.0)  # the scenario's topup_latency_s


async def test_guard_sees_only_balances_never_the_trace(monkeypatch: pytest.MonkeyPatch) -> None:
    recorded: list[RecordingAccount] = []

    def make(*args: object) -> RecordingAccount:
        api = RecordingAccount(*args)  # type: ignore[arg-type]
        api.reads, api.topup_times = [], []
        recorded.append(api)
        return api

    monkeypatch.setattr(bt, "InProcessAccount", make)
    sc = scenario()
    settings = bt.guard_settings(sc, {})
    result = await bt.run_guard(sc, HOUR_TRACE, settings, end=3601.0)
    (api,) = recorded
    # Every API call the guard made was a balance read or a top-up: nothing else reached it.
    assert result.api_calls == api.calls == len(api.reads) + len(api.topup_times)
    assert api.topup_times, "the trace needs top-ups for this test to mean anything"

    # Replay the same engine on the balances alone: no trace, no account. Same decisions.
    clock = VirtualClock()
    scripted = ScriptedAccount(clock, api.reads, latency=sc.balance_latency_s)
    engine = Engine(
        api=scripted,
        ledger=SqliteLedger(":memory:", account=DEMO_API_KEY),
        clock=clock,
        settings=settings,
        sink=Recorder(),
    )
    await engine.run(asyncio.Event(), until=3601.0)
    assert scripted.topup_times == pytest.approx(api.topup_times)


@pytest.mark.parametrize(
    ("initial", "demand", "amount", "expected"),
    [
        ("50", ["10", "20"], "50", 0),  # covered by the opening balance
        ("50", ["25", "25"], "50", 0),  # exactly the opening balance
        ("50", ["25", "25.01"], "50", 1),  # one cent short
        ("50", ["100"], "50", 1),
        ("50", ["100.01"], "50", 2),
        ("0", ["60", "60", "60"], "25", 8),  # 180 / 25 = 7.2 -> 8
    ],
)
def test_min_topups_is_the_fewest_top_ups_covering_the_demand(
    initial: str, demand: list[str], amount: str, expected: int
) -> None:
    events = [(float(i), D(x)) for i, x in enumerate(demand)]
    assert min_topups(scenario(initial_balance=initial, topup_amount=amount), events) == expected


def test_min_topups_in_the_report_matches_the_trace() -> None:
    report = backtest(scenario(), HOUR_TRACE)
    assert report.total_spend == D("180.00")
    assert report.min_topups == 3  # (180 - 50) / 50 = 2.6


def test_same_seed_gives_the_same_report() -> None:
    first = backtest(scenario(seed=3), HOUR_TRACE)
    again = backtest(scenario(seed=3), HOUR_TRACE)
    assert first.to_json() == again.to_json()


def test_seed_drives_vonage_autoreload_timing() -> None:
    # The check interval is drawn from the seed; a wide range makes the seeds' draws differ.
    runs = [
        backtest(
            scenario(seed=s, autoreload_check_min_s=60, autoreload_check_max_s=900), HOUR_TRACE
        )
        for s in (1, 2, 3)
    ]
    assert len({r.policies["autoreload_only"].failed_spend for r in runs}) > 1
