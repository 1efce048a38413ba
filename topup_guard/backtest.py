"""Replay a spend trace through the guard and two baselines, on a virtual clock.

The guard is the real ``Engine`` with the real policy and ledger code — only the account behind the
API is the in-process ``SimAccount`` and time is virtual. The guard sees what the API would show:
the balance when it polls, after the latency; never the trace. Vonage's own auto-reload keeps
running under every policy, as it does in production.

Policies compared:
- ``guard``: topup-guard.
- ``autoreload_only``: Vonage alone (a check every U(min, max) s; below the threshold, + amount).
- ``threshold_poller``: the naive script: poll every 60 s, top up once when below the threshold.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import math
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

from opentelemetry import trace

from topup_guard.clock import VirtualClock
from topup_guard.config import DEMO_API_KEY, DEMO_API_SECRET, DEMO_TRX, Settings, load_settings
from topup_guard.engine import Engine
from topup_guard.errors import (
    AutoReloadDisabledError,
    ConfigError,
    TopUpRefusedError,
)
from topup_guard.events import Recorder
from topup_guard.ledger.sqlite import SqliteLedger
from topup_guard.model import Balance
from topup_guard.signals.inbox import Signal, SignalInbox, SignalReading
from topup_guard.sim.account import SimAccount
from topup_guard.sim.refusals import SimRefusal
from topup_guard.sim.scenario import Scenario

POLICIES = ("guard", "autoreload_only", "threshold_poller")
SAMPLE_STEP = 5.0  # seconds between balance samples for the time-weighted mean
_SAMPLE_STEP_EUR_S = Decimal(str(SAMPLE_STEP))
NAIVE_POLL = 60.0
# Guard settings a scenario may not change: credentials and plumbing.
_NOT_POLICY = {"api_key", "api_secret", "trx", "rest_url", "api_url", "state_path", "redis_url"}


class BacktestInputError(ConfigError):
    """A trace or scenario problem; one line per problem, exit 2."""


@dataclass(frozen=True, slots=True)
class PolicyResult:
    failed_spend: Decimal
    failed_events: int
    exhausted_seconds: float
    topups: int
    autoreloads: int
    api_calls: int
    mean_balance: Decimal
    api_calls_per_hour: float
    peak_balance: Decimal = Decimal(0)
    credits: int = 0  # top-ups plus Vonage's own auto-reloads: every charge of the card


@dataclass(frozen=True, slots=True)
class BacktestReport:
    policies: Mapping[str, PolicyResult]
    min_topups: int
    total_spend: Decimal
    duration_s: float
    events: int

    def to_json(self) -> dict[str, object]:
        def plain(value: object) -> object:
            return float(value) if isinstance(value, Decimal) else value

        return {
            "policies": {
                name: {k: plain(v) for k, v in asdict(r).items()}
                for name, r in self.policies.items()
            },
            "min_topups": self.min_topups,
            "total_spend": float(self.total_spend),
            "duration_s": self.duration_s,
            "events": self.events,
        }


def read_trace(path: Path) -> list[tuple[float, Decimal]]:
    """CSV ``t,spend``: non-decreasing seconds, EUR >= 0. Errors name the line."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise BacktestInputError([f"--trace {path}: cannot read ({exc.strerror})"]) from None
    return parse_trace(text.splitlines(), source=str(path))


def parse_trace(lines: Iterable[str], *, source: str = "trace") -> list[tuple[float, Decimal]]:
    reader = csv.reader(lines)
    header = [h.strip() for h in next(reader, [])]
    if not "".join(header):
        raise BacktestInputError(
            [f"{source}:1: empty: expected the header 't,spend', then one line per event"]
        )
    if header[:2] != ["t", "spend"]:
        raise BacktestInputError(
            [f"{source}:1: the header must be 't,spend', not {','.join(header)!r}"]
        )
    events: list[tuple[float, Decimal]] = []
    last = -math.inf
    for lineno, row in enumerate(reader, start=2):
        if not row or not "".join(row).strip():
            continue
        if len(row) < 2:
            raise BacktestInputError(
                [f"{source}:{lineno}: expected 't,spend', got {','.join(row)!r}"]
            )
        try:
            t = float(row[0])
            spend = Decimal(row[1].strip())
        except (ValueError, ArithmeticError):
            raise BacktestInputError(
                [f"{source}:{lineno}: not numbers: {','.join(row)!r}"]
            ) from None
        if not math.isfinite(t) or t < 0:
            raise BacktestInputError([f"{source}:{lineno}: t must be a finite number >= 0"])
        if t < last:
            raise BacktestInputError(
                [f"{source}:{lineno}: t={row[0]} goes back in time (after {last})"]
            )
        if not spend.is_finite() or spend < 0:
            raise BacktestInputError([f"{source}:{lineno}: spend must be >= 0, got {row[1]!r}"])
        events.append((t, spend))
        last = t
    if not events:
        raise BacktestInputError([f"{source}: no events"])
    return events


def guard_settings(scenario: Scenario, overrides: Mapping[str, str]) -> Settings:
    """Guard settings: backtest defaults, then the scenario's ``guard`` object, then ``--set``."""
    values: dict[str, str] = {
        "topup_latency": str(scenario.topup_latency_s + scenario.balance_latency_s),
    }
    for origin, given in (("scenario guard", scenario.guard or {}), ("--set", overrides)):
        problems = [
            f"{origin}: unknown guard setting {key!r}"
            for key in given
            if key not in Settings.model_fields or key in _NOT_POLICY
        ]
        if problems:
            raise BacktestInputError(problems)
        values.update(
            {k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in given.items()}
        )
    env = {f"TOPUP_GUARD_{k.upper()}": v for k, v in values.items()}
    env |= {"VONAGE_API_KEY": DEMO_API_KEY, "VONAGE_API_SECRET": DEMO_API_SECRET}
    env |= {"TOPUP_GUARD_TRX": DEMO_TRX, "TOPUP_GUARD_STATE_PATH": ":memory:"}
    try:
        return load_settings(env)
    except ConfigError as exc:
        # load_settings speaks of environment variables; here the user wrote setting names.
        raise BacktestInputError([_setting_names(p) for p in exc.problems]) from None


def _setting_names(problem: str) -> str:
    named = re.sub(r"TOPUP_GUARD_([A-Z0-9_]+)", lambda m: m.group(1).lower(), problem)
    return f"guard setting {named}"


class SampledClock(VirtualClock):
    """A virtual clock that moves the account along as time passes and samples its balance."""

    def __init__(self, account: SimAccount) -> None:
        super().__init__(start=0.0)
        self._account = account
        self.balance_time = Decimal(0)  # integral of balance over time, EUR·s
        self.peak_balance = Decimal(account.balance)
        self._sampled_to = 0.0

    def advance(self, seconds: float) -> None:
        end = self.now() + max(seconds, 0.0)
        while self._sampled_to + SAMPLE_STEP <= end:
            self._step(self._sampled_to + SAMPLE_STEP)
        super().advance(seconds)

    def _step(self, t: float) -> None:
        self._account.advance_to(t)
        # Steps are always SAMPLE_STEP long (multiples of 5.0 are exact floats): one Decimal.
        balance = self._account.balance
        self.balance_time += balance * _SAMPLE_STEP_EUR_S
        if balance > self.peak_balance:
            self.peak_balance = balance
        self._sampled_to = t

    def mean_balance(self) -> Decimal:
        return (
            (self.balance_time / Decimal(str(self._sampled_to))) if self._sampled_to else Decimal(0)
        )


class _SilentTracer(trace.NoOpTracer):
    """No spans in a backtest (nothing exports them): skip even the no-op context bookkeeping,
    which the engine pays three or four times per cycle."""

    def start_as_current_span(self, *args: Any, **kwargs: Any) -> Any:
        return _NO_SPAN


_NO_SPAN = contextlib.nullcontext(trace.INVALID_SPAN)


class SignalClock(SampledClock):
    """A sampled clock that also plays the sender: each demand event's balance reaches the
    guard's signal inbox ``latency`` seconds after it happened, waking the guard's sleep."""

    def __init__(
        self, account: SimAccount, trace: list[tuple[float, Decimal]], inbox: SignalInbox,
        latency: float,
    ) -> None:  # fmt: skip
        super().__init__(account)
        self._times = [t for t, _ in trace]
        self._next = 0
        self._inbox = inbox
        self._latency = max(0.0, latency)
        self.signals = 0

    async def sleep(self, seconds: float, wake: asyncio.Event | None = None) -> bool:
        if wake is not None and wake.is_set():
            return True
        end = self.now() + max(seconds, 0.0)
        while self._next < len(self._times) and self._times[self._next] < self.now() - 1e-9:
            self._next += 1
        if self._next < len(self._times) and wake is self._inbox.wake:
            event_t = self._times[self._next]
            if event_t + self._latency <= end:
                self.advance(max(0.0, event_t - self.now()))
                self._account.advance_to(event_t)
                reading = SignalReading(self.wall(), self._account.balance, trusted=True)
                self.advance(self._latency)
                self._next += 1
                self.signals += 1
                self._inbox.offer(Signal(readings=(reading,), successes=1))
                await asyncio.sleep(0)
                return True
        return await super().sleep(seconds, wake)


class InProcessAccount:
    """The account as the API shows it: answers take time, and count as API calls."""

    def __init__(self, account: SimAccount, clock: SampledClock, scenario: Scenario) -> None:
        self._account = account
        self._clock = clock
        self._scenario = scenario
        self.calls = 0

    async def get_balance(self) -> Balance:
        self.calls += 1
        await self._clock.sleep(self._scenario.balance_latency_s)
        self._account.advance_to(self._clock.now())
        return Balance(self._account.balance, self._account.auto_reload)

    async def top_up(self, trx: str) -> None:
        self.calls += 1
        await self._clock.sleep(self._scenario.topup_latency_s)
        try:
            self._account.top_up(trx, self._clock.now())
        except SimRefusal as refusal:
            if refusal.code == "topup-failed":
                raise TopUpRefusedError("POST /account/top-up: topup failed", status=401) from None
            raise AutoReloadDisabledError(
                "POST /account/top-up: not auto-reload enabled", status=401
            ) from None


def _account(scenario: Scenario, trace: list[tuple[float, Decimal]]) -> SimAccount:
    # Not SimAccount.from_scenario: here the trace is the only demand (no scenario spend), and
    # the top-up latency is applied by InProcessAccount, not as a credit delay.
    return SimAccount(
        api_key=DEMO_API_KEY,
        api_secret=DEMO_API_SECRET,
        trx=DEMO_TRX,
        balance=scenario.initial_balance,
        topup_amount=scenario.topup_amount,
        autoreload_threshold=scenario.autoreload_threshold,
        auto_reload=scenario.auto_reload,
        check_min_s=scenario.autoreload_check_min_s,
        check_max_s=scenario.autoreload_check_max_s,
        seed=scenario.seed,
        trace=trace,
    )


def _result(account: SimAccount, clock: SampledClock, topups: int, calls: int) -> PolicyResult:
    hours = max(clock.now(), 1e-9) / 3600.0
    return PolicyResult(
        failed_spend=account.failed_spend,
        failed_events=account.failed_events,
        exhausted_seconds=round(account.exhausted_seconds, 3),
        topups=topups,
        autoreloads=len(account.autoreloads),
        api_calls=calls,
        mean_balance=clock.mean_balance().quantize(Decimal("0.01")),
        api_calls_per_hour=round(calls / hours, 1),
        peak_balance=clock.peak_balance.quantize(Decimal("0.01")),
        credits=topups + len(account.autoreloads),
    )


async def run_guard(
    scenario: Scenario,
    trace: list[tuple[float, Decimal]],
    settings: Settings,
    end: float,
    *,
    signal: bool = False,
) -> PolicyResult:
    account = _account(scenario, trace)
    inbox = SignalInbox() if signal and scenario.signal_latency_s is not None else None
    clock: SampledClock = (
        SignalClock(account, trace, inbox, scenario.signal_latency_s or 0.0)
        if inbox is not None
        else SampledClock(account)
    )
    api = InProcessAccount(account, clock, scenario)
    ledger = SqliteLedger(":memory:", account=DEMO_API_KEY)
    engine = Engine(
        api=api,
        ledger=ledger,
        clock=clock,
        settings=settings,
        sink=Recorder(),
        tracer=_SilentTracer(),
        inbox=inbox,
    )
    await engine.run(asyncio.Event(), until=end)
    clock.advance(max(0.0, end - clock.now()))
    account.advance_to(end)
    await ledger.close()
    return _result(account, clock, len(account.topups), api.calls)


def run_autoreload_only(
    scenario: Scenario, trace: list[tuple[float, Decimal]], end: float
) -> PolicyResult:
    account = _account(scenario, trace)
    clock = SampledClock(account)
    clock.advance(end)
    account.advance_to(end)
    return _result(account, clock, 0, 0)


def run_threshold_poller(
    scenario: Scenario, trace: list[tuple[float, Decimal]], end: float
) -> PolicyResult:
    account = _account(scenario, trace)
    clock = SampledClock(account)
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
        clock.advance(max(0.0, min(NAIVE_POLL, end - clock.now())))
    account.advance_to(end)
    return _result(account, clock, len(account.topups), calls)


def min_topups(scenario: Scenario, trace: list[tuple[float, Decimal]]) -> int:
    """The fewest top-ups that could cover the trace: the demand beyond the opening balance."""
    total = sum((s for _, s in trace), Decimal(0))
    short = total - scenario.initial_balance
    return 0 if short <= 0 else math.ceil(short / scenario.topup_amount)


def backtest(
    scenario: Scenario,
    trace: list[tuple[float, Decimal]],
    overrides: Mapping[str, str] | None = None,
    *,
    progress: Callable[[str], None] | None = None,
) -> BacktestReport:
    settings = guard_settings(scenario, overrides or {})
    end = trace[-1][0] + 1.0
    results: dict[str, PolicyResult] = {}
    results["guard"] = asyncio.run(run_guard(scenario, trace, settings, end))
    if scenario.signal_latency_s is not None:
        results["guard_with_signal"] = asyncio.run(
            run_guard(scenario, trace, settings, end, signal=True)
        )
    results["autoreload_only"] = run_autoreload_only(scenario, trace, end)
    results["threshold_poller"] = run_threshold_poller(scenario, trace, end)
    return BacktestReport(
        policies=results,
        min_topups=min_topups(scenario, trace),
        total_spend=sum((s for _, s in trace), Decimal(0)),
        duration_s=end,
        events=len(trace),
    )


# How each metric is shown, shared by the table here and the benchmark report.
METRIC_ROWS: list[tuple[str, Callable[[PolicyResult], str]]] = [
    ("failed_spend (EUR)", lambda r: f"{r.failed_spend:.2f}"),
    ("failed_events", lambda r: str(r.failed_events)),
    ("exhausted_seconds", lambda r: f"{r.exhausted_seconds:.0f}"),
    ("topups", lambda r: str(r.topups)),
    ("autoreloads", lambda r: str(r.autoreloads)),
    ("api_calls", lambda r: str(r.api_calls)),
    ("api_calls per hour", lambda r: f"{r.api_calls_per_hour:.0f}"),
    ("mean_balance (EUR)", lambda r: f"{r.mean_balance:.2f}"),
    ("peak_balance (EUR)", lambda r: f"{r.peak_balance:.2f}"),
    ("credits (all charges)", lambda r: str(r.credits)),
]


def render_table(report: BacktestReport) -> str:
    cols = [p for p in (*POLICIES, "guard_with_signal") if p in report.policies]
    rows = METRIC_ROWS
    width = max(len(label) for label, _ in rows) + 2
    out = [" " * width + "".join(f"{c:>18}" for c in cols)]
    for label, fmt in rows:
        cells = "".join(f"{fmt(report.policies[c]):>18}" for c in cols)
        out.append(f"{label:<{width}}{cells}")
    out.append(
        f"trace: {report.events} events over {report.duration_s / 3600:.2f} h, total_spend "
        f"{report.total_spend:.2f} EUR, min_topups {report.min_topups}"
    )
    return "\n".join(out)


@dataclass(frozen=True, slots=True)
class SweepRow:
    value: str
    guard: PolicyResult


def sweep(
    scenario: Scenario,
    trace: list[tuple[float, Decimal]],
    key: str,
    values: list[str],
    overrides: Mapping[str, str] | None = None,
    *,
    signal: bool = False,
) -> list[SweepRow]:
    """The guard alone under each value of one setting: the frontier an operator picks from."""
    end = trace[-1][0] + 1.0
    rows = []
    for value in values:
        settings = guard_settings(scenario, {**(overrides or {}), key: value})
        rows.append(SweepRow(value, asyncio.run(run_guard(scenario, trace, settings, end,
                                                          signal=signal))))  # fmt: skip
    return rows


def render_sweep(key: str, rows: list[SweepRow], fixed_poll_per_hour: float = 360.0) -> str:
    header = f"{key:>14} {'calls/h':>9} {'vs 10-s poll':>13} {'mean EUR':>10} {'peak EUR':>10}"
    header += f" {'refused EUR':>12} {'credits':>8}"
    out = [header]
    for r in rows:
        g = r.guard
        share = g.api_calls_per_hour / fixed_poll_per_hour
        out.append(
            f"{r.value:>14} {g.api_calls_per_hour:>9.0f} {share:>12.2f}x"
            f" {g.mean_balance:>10.2f} {g.peak_balance:>10.2f} {g.failed_spend:>12.2f}"
            f" {g.credits:>8}"
        )
    return "\n".join(out)
