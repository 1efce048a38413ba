"""Backtest tables with goals, the poll-interval frontier, the feasibility bound, throughput.

Every trace runs the three policies at the scenario's settings (``poll_min`` 2 s), then the guard
alone at ``poll_interval`` 10, 30 and 60 s (the frontier an operator picks from), and with the
sender's signal on (``poll_interval`` 300 s, each trace event a balance sample 0.2 s later).
Goals (each printed PASS/FAIL), from issues 11 and 12:
- at 60 s: refused demand at most a quarter of Vonage's auto-reload alone and at most a few EUR
  (the very first burst of a kind), at most 0.3x the calls of a fixed 10-s poll (108/h), at most
  the fewest credits + 3, a mean balance at most 3x the naive 60-s poller's;
- at 10 s: nothing refused, at most 400 calls/h;
- with the signal at 300 s: nothing refused, at most 0.15x the calls of a fixed 10-s poll (54/h).

The feasibility bound says what polling alone can see: between two polls the guard is blind for
``poll_interval + latency + margin``; a burst that spends more than the headroom the guard keeps
(the floor plus one top-up) in such a window cannot be caught by polling alone — the sender's
signal is the answer there.
"""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

from topup_guard.backtest import (
    BacktestReport,
    PolicyResult,
    SweepRow,
    backtest,
    guard_settings,
    read_trace,
    sweep,
)
from topup_guard.sim.scenario import Scenario, load_scenario

TRACES = Path(__file__).parent / "traces"
TRACE_NAMES = (
    "steady", "diurnal", "campaign", "flash", "sawtooth", "ramp", "quiet", "recurring",
)  # fmt: skip
FIXED_POLL_PER_HOUR = 360.0  # a fixed 10-second poll
REPLAY_GOAL_S = 5.0
POLL_MIN = "2"
FRONTIER = ("10", "30", "60")
SIGNAL_POLL = "300"
FEW_EUR = Decimal("5")  # what the very first burst of a kind may cost at 60 s


@dataclass(frozen=True, slots=True)
class Goal:
    name: str
    passed: bool
    detail: str

    @property
    def verdict(self) -> str:
        return "PASS" if self.passed else "FAIL"


@dataclass(frozen=True, slots=True)
class Feasibility:
    window_s: float  # poll_min + topup_latency: how long the guard is blind before a credit
    peak_spend: Decimal  # the most the trace spends in any such window
    buffer: Decimal  # min_balance + one top-up

    @property
    def fits(self) -> bool:
        return self.peak_spend < self.buffer

    def line(self) -> str:
        rate = self.peak_spend / Decimal(str(self.window_s))
        verdict = "a top-up can land in time" if self.fits else "no poll can be early enough"
        return (
            f"peak spend in any {self.window_s:g} s (poll_min + latency) = {self.peak_spend:.2f} "
            f"EUR (~{rate:.3f} EUR/s) vs buffer {self.buffer:.2f} EUR (min_balance + one "
            f"top-up): {verdict}"
        )


@dataclass(frozen=True, slots=True)
class TraceResult:
    name: str
    report: BacktestReport
    goals: list[Goal]
    feasibility: Feasibility
    replay_s: float  # wall time of the in-process replay (all three policies)
    frontier: list[SweepRow] = field(default_factory=list)  # the guard at 10, 30, 60 s
    signal: PolicyResult | None = None  # the guard with the sender's signal, at 300 s
    blind: Feasibility | None = None  # what polling at 60 s cannot see


def peak_spend(events: Sequence[tuple[float, Decimal]], window: float) -> Decimal:
    """The largest total of events inside any half-open window ``[t, t + window)``."""
    best, total, lo = Decimal(0), Decimal(0), 0
    for t, spend in events:
        total += spend
        while events[lo][0] <= t - window:
            total -= events[lo][1]
            lo += 1
        best = max(best, total)
    return best


def goals(
    report: BacktestReport, frontier: list[SweepRow], signal: PolicyResult | None
) -> list[Goal]:
    at = {r.value: r.guard for r in frontier}
    vonage, naive = report.policies["autoreload_only"], report.policies["threshold_poller"]
    out: list[Goal] = []
    if "60" in at:
        g = at["60"]
        allowed = min(FEW_EUR, vonage.failed_spend / 4)
        out += [
            Goal("60 s: refused <= min(5 EUR, 1/4 of Vonage alone's)", g.failed_spend <= allowed,
                 f"{g.failed_spend:.2f} vs {allowed:.2f} EUR"),
            Goal("60 s: API calls/h <= 108 (0.3x a fixed 10-s poll)", g.api_calls_per_hour <= 108,
                 f"{g.api_calls_per_hour:.0f}/h"),
            Goal("60 s: credits <= fewest + 3", g.credits <= report.min_topups + 3,
                 f"{g.credits} <= {report.min_topups} + 3"),
            Goal("60 s: mean balance <= 3x the naive 60-s poller's",
                 g.mean_balance <= 3 * naive.mean_balance,
                 f"{g.mean_balance:.2f} vs 3 x {naive.mean_balance:.2f} EUR"),
        ]  # fmt: skip
    if "10" in at:
        g = at["10"]
        out.append(Goal("10 s: nothing refused, API calls/h <= 400",
                        g.failed_spend == 0 and g.api_calls_per_hour <= 400,
                        f"{g.failed_spend:.2f} EUR, {g.api_calls_per_hour:.0f}/h"))  # fmt: skip
    if signal is not None:
        out.append(
            Goal(
                "signal, 300 s: nothing refused, API calls/h <= 54 (0.15x)",
                signal.failed_spend == 0 and signal.api_calls_per_hour <= 54,
                f"{signal.failed_spend:.2f} EUR, {signal.api_calls_per_hour:.0f}/h",
            )
        )
    return out  # fmt: skip


def backtest_table(
    trace_path: Path, scenario_path: Path, *, name: str | None = None
) -> TraceResult:
    """Run one trace through the three policies, the frontier and the signal; judge the goals."""
    return judge_trace(
        name or trace_path.stem, load_scenario(scenario_path), read_trace(trace_path)
    )


def judge_trace(name: str, scenario: Scenario, events: list[tuple[float, Decimal]]) -> TraceResult:
    """``backtest_table`` for a trace already in memory (``bench.heldout`` generates them)."""
    base = {"poll_min": POLL_MIN}
    settings = guard_settings(scenario, base)
    started = time.perf_counter()
    report = backtest(scenario, events, base)
    replay_s = time.perf_counter() - started
    frontier = sweep(scenario, events, "poll_interval", list(FRONTIER), base)
    with_signal = dataclasses.replace(scenario, signal_latency_s=0.2)
    (signal_row,) = sweep(with_signal, events, "poll_interval", [SIGNAL_POLL], base, signal=True)
    window = settings.poll_min + settings.topup_latency
    feasibility = Feasibility(
        window_s=round(window, 3),
        peak_spend=peak_spend(events, window),
        buffer=settings.min_balance + scenario.topup_amount,
    )
    blind_s = 60.0 + settings.topup_latency + settings.safety_margin
    blind = Feasibility(
        window_s=round(blind_s, 3),
        peak_spend=peak_spend(events, blind_s),
        buffer=settings.min_balance + scenario.topup_amount,
    )
    return TraceResult(
        name=name,
        report=report,
        goals=goals(report, frontier, signal_row.guard),
        feasibility=feasibility,
        replay_s=replay_s,
        frontier=frontier,
        signal=signal_row.guard,
        blind=blind,
    )


@dataclass(frozen=True, slots=True)
class Throughput:
    name: str
    events: int
    replay_s: float  # best in-process replay of all three policies
    cli_s: float  # `topup-guard backtest --json`, process start to exit

    @property
    def events_per_s(self) -> float:
        return self.events / self.replay_s if self.replay_s else 0.0

    @property
    def passed(self) -> bool:
        return self.cli_s < REPLAY_GOAL_S


def throughput(result: TraceResult, *, repeats: int = 3) -> Throughput:
    """Replay timings: the best of ``repeats`` in-process runs, and the whole CLI once."""
    trace = TRACES / f"{result.name}.csv"
    scenario_path = TRACES / f"{result.name}.json"
    scenario, events = load_scenario(scenario_path), read_trace(trace)
    best = result.replay_s
    for _ in range(repeats - 1):
        started = time.perf_counter()
        backtest(scenario, events)
        best = min(best, time.perf_counter() - started)
    cli = [sys.executable, "-m", "topup_guard", "backtest", "--json"]
    started = time.perf_counter()
    subprocess.run(
        [*cli, "--trace", str(trace), "--scenario", str(scenario_path)],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return Throughput(result.name, len(events), best, time.perf_counter() - started)
