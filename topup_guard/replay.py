"""The backtest replayed with its time series kept: balance, top-ups, refused demand, blockers.

``backtest.backtest`` returns totals only. This module runs the same three policies through the
backtest's own pieces (``SampledClock``, ``InProcessAccount``, the real ``Engine``, the naive
poller's rules) and keeps, every ``SAMPLE_STEP`` seconds, each account's balance and the demand
it refused, plus what blocked the guard's decisions; a test checks that its totals equal
``backtest``'s. The report (``report.py``) draws from it; the CLI's notes read the blockers.

It copies the run loops of ``backtest.run_guard`` / ``run_threshold_poller`` (and uses the
backtest's private ``_account`` and ``_SilentTracer``) because those give no hook for a sample
callback; a ``clock`` (or ``on_sample``) parameter on the backtest's run functions would let this
module keep only ``RecordingClock`` and the blocker sink.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal

from topup_guard import backtest as bt
from topup_guard.config import DEMO_API_KEY, DEMO_TRX, Settings
from topup_guard.engine import Engine
from topup_guard.events import Event, PollCompleted
from topup_guard.ledger.sqlite import SqliteLedger
from topup_guard.sim.account import SimAccount
from topup_guard.sim.refusals import SimRefusal
from topup_guard.sim.scenario import Scenario

Trace = list[tuple[float, Decimal]]


@dataclass
class PolicyRun:
    """One policy's run: samples every SAMPLE_STEP seconds and the events worth marking."""

    name: str
    times: list[float] = field(default_factory=list)
    balances: list[float] = field(default_factory=list)  # for drawing only; totals stay Decimal
    refused: list[tuple[float, Decimal]] = field(default_factory=list)  # EUR refused per step
    topups: list[tuple[float, Decimal]] = field(default_factory=list)
    autoreloads: list[tuple[float, Decimal]] = field(default_factory=list)
    blocked: Counter[str] = field(default_factory=Counter)  # guard polls blocked, by blocker
    failed_spend: Decimal = Decimal(0)
    api_calls: int = 0


class RecordingClock(bt.SampledClock):
    """``SampledClock`` that also keeps each sample (hooks its per-step ``_step``)."""

    def __init__(self, account: SimAccount, run: PolicyRun) -> None:
        super().__init__(account)
        self._run = run
        self._acct = account
        self._failed = Decimal(0)

    def _step(self, t: float) -> None:
        super()._step(t)
        self._run.times.append(t)
        self._run.balances.append(float(self._acct.balance))
        self.refusals_to(t)

    def refusals_to(self, t: float) -> None:
        """Record the demand refused since the last record (also for the tail after the last
        whole step, so the refused total is the account's)."""
        if self._acct.failed_spend > self._failed:
            self._run.refused.append((t, self._acct.failed_spend - self._failed))
            self._failed = self._acct.failed_spend


class _Blockers:
    """A sink counting the guard's polls by what blocked the decision (caps, breaker, ...)."""

    def __init__(self, run: PolicyRun) -> None:
        self._run = run

    def emit(self, event: Event) -> None:
        if isinstance(event, PollCompleted) and event.decision.blocked_by:
            self._run.blocked[event.decision.blocked_by] += 1


def _finish(run: PolicyRun, account: SimAccount, calls: int, clock: RecordingClock) -> PolicyRun:
    clock.refusals_to(account.now)
    run.topups = list(account.topups)
    run.autoreloads = list(account.autoreloads)
    run.failed_spend = account.failed_spend
    run.api_calls = calls
    return run


async def _guard(scenario: Scenario, trace: Trace, settings: Settings, end: float) -> PolicyRun:
    run = PolicyRun("guard")
    account = bt._account(scenario, trace)
    clock = RecordingClock(account, run)
    api = bt.InProcessAccount(account, clock, scenario)
    ledger = SqliteLedger(":memory:", account=DEMO_API_KEY)
    engine = Engine(api=api, ledger=ledger, clock=clock, settings=settings, sink=_Blockers(run),
                    tracer=bt._SilentTracer())  # fmt: skip
    await engine.run(asyncio.Event(), until=end)
    clock.advance(max(0.0, end - clock.now()))
    account.advance_to(end)
    await ledger.close()
    return _finish(run, account, api.calls, clock)


def _autoreload_only(scenario: Scenario, trace: Trace, end: float) -> PolicyRun:
    run = PolicyRun("autoreload_only")
    account = bt._account(scenario, trace)
    clock = RecordingClock(account, run)
    clock.advance(end)
    account.advance_to(end)
    return _finish(run, account, 0, clock)


def _threshold_poller(scenario: Scenario, trace: Trace, end: float) -> PolicyRun:
    run = PolicyRun("threshold_poller")
    account = bt._account(scenario, trace)
    clock = RecordingClock(account, run)
    calls = 0
    while clock.now() < end:
        calls += 1
        clock.advance(scenario.balance_latency_s)
        account.advance_to(clock.now())
        if account.balance < scenario.autoreload_threshold and account.auto_reload:
            calls += 1
            clock.advance(scenario.topup_latency_s)
            with contextlib.suppress(SimRefusal):
                account.top_up(DEMO_TRX, clock.now())
        clock.advance(max(0.0, min(bt.NAIVE_POLL, end - clock.now())))
    account.advance_to(end)
    return _finish(run, account, calls, clock)


def replay(
    scenario: Scenario, trace: Trace, overrides: Mapping[str, str] | None = None
) -> dict[str, PolicyRun]:
    """Each policy of ``backtest.POLICIES`` over ``trace``, with its samples kept."""
    settings = bt.guard_settings(scenario, overrides or {})
    end = trace[-1][0] + 1.0
    return {
        "guard": asyncio.run(_guard(scenario, trace, settings, end)),
        "autoreload_only": _autoreload_only(scenario, trace, end),
        "threshold_poller": _threshold_poller(scenario, trace, end),
    }


def peak_spend(trace: Trace, window: float) -> Decimal:
    """The most the trace demands inside any half-open window ``[t, t + window)``."""
    best, total, lo = Decimal(0), Decimal(0), 0
    for t, spend in trace:
        total += spend
        while trace[lo][0] <= t - window:
            total -= trace[lo][1]
            lo += 1
        best = max(best, total)
    return best
