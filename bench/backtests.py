"""Backtest tables with goals, the feasibility bound, and replay throughput.

Goals (each printed PASS/FAIL):
- the guard fails no demand (``failed_spend == 0``);
- it buys at most two top-ups more than the fewest that could cover the trace;
- its failed spend is far below Vonage's auto-reload alone (at most a tenth of it);
- it calls the API at most half as often as a fixed 10-second poll (360/h -> 180/h).

The feasibility bound says why the first goal can be met at all: between a balance read and the
credit landing, the guard is blind for up to ``poll_min + topup_latency`` seconds. If the trace's
peak spend over any such window is below the buffer the guard keeps (``min_balance`` plus one
top-up), a top-up decided at one poll lands before the money runs out.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

from topup_guard.backtest import BacktestReport, backtest, guard_settings, read_trace
from topup_guard.sim.scenario import load_scenario

TRACES = Path(__file__).parent / "traces"
TRACE_NAMES = ("steady", "diurnal", "campaign", "flash")
FIXED_POLL_PER_HOUR = 360.0  # a fixed 10-second poll
REPLAY_GOAL_S = 5.0


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


def goals(report: BacktestReport) -> list[Goal]:
    g, vonage = report.policies["guard"], report.policies["autoreload_only"]
    far_below = g.failed_spend == 0 if vonage.failed_spend == 0 else (
        g.failed_spend * 10 <= vonage.failed_spend
    )  # fmt: skip
    return [
        Goal("guard failed_spend == 0", g.failed_spend == 0, f"{g.failed_spend:.2f} EUR"),
        Goal(
            "guard topups <= min_topups + 2",
            g.topups <= report.min_topups + 2,
            f"{g.topups} <= {report.min_topups} + 2",
        ),
        Goal(
            "guard failed_spend <= 1/10 of autoreload_only's",
            far_below,
            f"{g.failed_spend:.2f} vs {vonage.failed_spend:.2f} EUR",
        ),
        Goal(
            "guard API calls/h <= 180 (half a fixed 10-s poll)",
            g.api_calls_per_hour <= FIXED_POLL_PER_HOUR / 2,
            f"{g.api_calls_per_hour:.0f}/h",
        ),
    ]


def backtest_table(
    trace_path: Path, scenario_path: Path, *, name: str | None = None
) -> TraceResult:
    """Run one trace through the three policies and judge the goals."""
    scenario = load_scenario(scenario_path)
    events = read_trace(trace_path)
    settings = guard_settings(scenario, {})
    started = time.perf_counter()
    report = backtest(scenario, events)
    replay_s = time.perf_counter() - started
    window = settings.poll_min + settings.topup_latency
    feasibility = Feasibility(
        window_s=round(window, 3),
        peak_spend=peak_spend(events, window),
        buffer=settings.min_balance + scenario.topup_amount,
    )
    return TraceResult(
        name=name or trace_path.stem,
        report=report,
        goals=goals(report),
        feasibility=feasibility,
        replay_s=replay_s,
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
