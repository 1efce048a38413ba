"""Held-out traffic: the backtest goals on traces generated at random, none of them tuned on.

``bench/traces`` holds eight fixed traces; a policy tuned on them can pass them and fail on the
next customer's traffic. This draws many traces per family — each family a shape the guard must
meet (steady, diurnal, campaigns, a flash burst, a sawtooth, a ramp, a quiet account, batch sends,
daily campaigns over three days), every parameter drawn at random per seed: rates, burst times,
lengths and heights, and the account itself (opening balance, top-up amount 20, 50 or 100 EUR,
top-up latency 1-5 s) — and judges each with the goals ``make bench`` applies to the fixed ones
(``backtests.goals``).

A trace whose worst burst spends more, within the time the guard is blind (a poll interval +
latency + margin; with the signal, ``poll_min`` + latency), than it could have in hand (the
floor + one top-up) cannot be met that way by any guard that has not seen such a burst before:
those goals are shown but not expected of that trace (``seen_in_time``).

``python -m bench.heldout [--seeds N] [--families ...] [--out FILE]``; deterministic per seed.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import math
import random
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

from bench.backtests import POLL_MIN, TraceResult, judge_trace, peak_spend
from topup_guard.backtest import PolicyResult, guard_settings
from topup_guard.sim.scenario import Scenario

HOURS6 = 6 * 3600
Shape = Callable[[int], float]  # EUR/s at second t


def _jitter(rng: random.Random, lo: float, hi: float) -> Callable[[float], float]:
    return lambda rate: rate * rng.uniform(lo, hi)


def steady(rng: random.Random) -> Shape:
    rate, j = rng.uniform(0.005, 0.06), _jitter(rng, 0.6, 1.4)
    return lambda t: j(rate)


def diurnal(rng: random.Random) -> Shape:
    peak, phase, j = rng.uniform(0.02, 0.1), rng.uniform(0, 1), _jitter(rng, 0.5, 1.5)
    return lambda t: j(peak / 2 * (1 - math.cos(2 * math.pi * (t / HOURS6 + phase))))


def campaign(rng: random.Random) -> Shape:
    base, j = rng.uniform(0.002, 0.02), _jitter(rng, 0.5, 1.5)
    runs = [
        (start, start + rng.uniform(5, 30) * 60, rng.uniform(5, 25))
        for start in sorted(rng.uniform(600, HOURS6 - 1800) for _ in range(rng.randint(2, 5)))
    ]
    return lambda t: j(base * next((m for s, e, m in runs if s <= t < e), 1.0))


def flash(rng: random.Random) -> Shape:
    base, j = rng.uniform(0.001, 0.008), _jitter(rng, 0.0, 2.0)
    start, length = rng.uniform(1800, HOURS6 - 1800), rng.uniform(30, 300)
    rate = rng.uniform(30, 150) / length
    return lambda t: rate * rng.uniform(0.8, 1.2) if start <= t < start + length else j(base)


def sawtooth(rng: random.Random) -> Shape:
    base, j = rng.uniform(0.001, 0.005), _jitter(rng, 0.0, 2.0)
    period, length, height = rng.uniform(300, 1200), rng.uniform(20, 90), rng.uniform(0.1, 0.6)
    return lambda t: height * rng.uniform(0.8, 1.2) if t % period < length else j(base)


def ramp(rng: random.Random) -> Shape:
    a, b, j = rng.uniform(0.001, 0.1), rng.uniform(0.001, 0.1), _jitter(rng, 0.6, 1.4)
    return lambda t: j(a + (b - a) * t / HOURS6)


def quiet(rng: random.Random) -> Shape:
    chance, price = 1 / rng.uniform(60, 600), rng.uniform(0.005, 0.05)
    return lambda t: price if rng.random() < chance else 0.0


def batches(rng: random.Random) -> Shape:
    """Bulk sends: every 10-40 min a batch of 5-40 EUR spent within 5-60 s."""
    base, j = rng.uniform(0.001, 0.01), _jitter(rng, 0.5, 1.5)
    runs, t = [], rng.uniform(300, 2400)
    while t < HOURS6:
        length = rng.uniform(5, 60)
        runs.append((t, t + length, rng.uniform(5, 40) / length))
        t += rng.uniform(600, 2400)
    return lambda t: next((r for s, e, r in runs if s <= t < e), 0.0) + j(base)


RECURRING_DAYS, RECURRING_STEP = 3, 5


def recurring(rng: random.Random) -> Shape:
    """Three days from midnight: 1-3 campaigns a day at the same hours (start +-10 min)."""
    day, night, j = rng.uniform(0.002, 0.01), rng.uniform(0.0002, 0.002), _jitter(rng, 0.5, 1.5)
    daily = [
        (rng.uniform(6, 21) * 3600, rng.uniform(10, 30) * 60, rng.uniform(0.1, 0.5))
        for _ in range(rng.randint(1, 3))
    ]
    runs = [
        (d * 86400 + at + shift, d * 86400 + at + shift + length, rate)
        for d in range(RECURRING_DAYS)
        for at, length, rate in daily
        for shift in [rng.uniform(-600, 600)]
    ]

    def shape(t: int) -> float:
        burst = next((r for s, e, r in runs if s <= t < e), None)
        if burst is not None:
            return burst * rng.uniform(0.8, 1.2)
        return j(day if 7 * 3600 <= t % 86400 < 22 * 3600 else night)

    return shape


FAMILIES: dict[str, Callable[[random.Random], Shape]] = {
    "steady": steady, "diurnal": diurnal, "campaign": campaign, "flash": flash,
    "sawtooth": sawtooth, "ramp": ramp, "quiet": quiet, "batches": batches,
    "recurring": recurring,
}  # fmt: skip


def generate(family: str, seed: int) -> tuple[Scenario, list[tuple[float, Decimal]]]:
    """One held-out trace and its account, deterministic in (family, seed)."""
    rng = random.Random(f"heldout-{family}-{seed}")
    scenario = Scenario(
        initial_balance=Decimal(rng.choice([20, 30, 50, 80, 100])),
        topup_amount=Decimal(rng.choice([20, 50, 100])),
        autoreload_threshold=Decimal(10),
        topup_latency_s=round(rng.uniform(1, 5), 1),
        seed=seed,
    )
    shape = FAMILIES[family](rng)
    step = RECURRING_STEP if family == "recurring" else 1
    end = RECURRING_DAYS * 86400 if family == "recurring" else HOURS6
    events = []
    for t in range(0, end, step):
        spend = Decimal(f"{shape(t) * step:.4f}")
        events.append((float(t), spend))
    return dataclasses.replace(scenario, guard=caps_for(events, scenario.topup_amount)), events


def caps_for(events: list[tuple[float, Decimal]], amount: Decimal) -> dict[str, str]:
    """The caps an operator would set for this traffic: twice its worst hour and day, never
    below the defaults. The defaults (4 an hour, 1,000 EUR a day) are sized for top-ups of
    50 EUR and a few hundred EUR a day; with 20-EUR top-ups a busy hour needs more, and a guard
    held by its caps refuses demand by design — that is the caps working, not the policy."""
    hour, day = peak_spend(events, 3600), peak_spend(events, 86400)
    return {
        "max_topups_per_hour": str(max(4, math.ceil(2 * hour / amount) + 1)),
        "max_topups_per_day": str(max(24, math.ceil(2 * day / amount) + 1)),
        "max_daily_amount": str(max(Decimal(1000), 2 * day + amount)),
    }


@dataclass(frozen=True, slots=True)
class Judged:
    family: str
    seed: int
    topup_amount: Decimal
    result: TraceResult
    seen_in_time: dict[str, bool]  # goal prefix -> the worst burst fits what can be in hand

    def expected(self) -> list[str]:
        """The goals this trace must pass: those whose polling (or signal) can see its worst
        burst in time — its spend within the blind window below floor + one top-up."""
        return [g.name for g in self.result.goals if self.seen_in_time[_prefix(g.name)]]

    def failed(self) -> list[str]:
        wanted = set(self.expected())
        return [g.name for g in self.result.goals if g.name in wanted and not g.passed]

    @property
    def beside_the_bound(self) -> bool:
        return not all(self.seen_in_time.values())


def _prefix(goal: str) -> str:
    return goal.split(":", 1)[0].split(",", 1)[0]  # "60 s", "10 s", "signal"


def seen_in_time(scenario: Scenario, events: list[tuple[float, Decimal]]) -> dict[str, bool]:
    """Per goal family: can the guard see the trace's worst burst in time? Polling at P is
    blind for P + latency + margin; the signal, for ``poll_min`` + latency (one confirming read,
    then the credit's way). In hand at least: the floor and one top-up."""
    st = guard_settings(scenario, {"poll_min": POLL_MIN})
    buffer = st.min_balance + scenario.topup_amount
    windows = {
        "60 s": 60 + st.topup_latency + st.safety_margin,
        "10 s": 10 + st.topup_latency + st.safety_margin,
        "signal": st.poll_min + st.topup_latency,
    }
    return {k: peak_spend(events, w) < buffer for k, w in windows.items()}


def judge(
    families: Sequence[str], seeds: int, progress: Callable[[str], None], first_seed: int = 0
) -> list[Judged]:
    out = []
    for family in families:
        for seed in range(first_seed, first_seed + seeds):
            scenario, events = generate(family, seed)
            result = judge_trace(f"{family}-{seed}", scenario, events)
            out.append(
                Judged(family, seed, scenario.topup_amount, result, seen_in_time(scenario, events))
            )
            progress(f"{family}-{seed}: {', '.join(out[-1].failed()) or 'all goals PASS'}")
    return out


def _worst_refused(rows: list[Judged]) -> str:
    worst = max(rows, key=lambda j: _at(j, "60").failed_spend)
    vonage = worst.result.report.policies["autoreload_only"].failed_spend
    return f"{_at(worst, '60').failed_spend:.2f} / {vonage:.2f}"


def _at(j: Judged, value: str) -> PolicyResult:
    return next(r.guard for r in j.result.frontier if r.value == value)


def report(judged: list[Judged]) -> str:
    lines = [
        "| family | traces | beside the bound | goals passed | refused at 60 s, worst / Vonage "
        "alone (EUR) | calls/h at 60 s, median (max) | credits over the fewest, max | mean "
        "balance / naive, max | at 10 s: refused max, calls/h max | signal: refused max, "
        "calls/h max |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for family in dict.fromkeys(j.family for j in judged):
        rows = [j for j in judged if j.family == family]
        expected = sum(len(j.expected()) for j in rows)
        passed = expected - sum(len(j.failed()) for j in rows)
        calls = [_at(j, "60").api_calls_per_hour for j in rows]
        over = max(_at(j, "60").credits - j.result.report.min_topups for j in rows)
        ratio = max(
            float(_at(j, "60").mean_balance)
            / max(float(j.result.report.policies["threshold_poller"].mean_balance), 1e-9)
            for j in rows
        )
        ten = [_at(j, "10") for j in rows]
        sig = [j.result.signal for j in rows if j.result.signal is not None]
        lines.append(
            f"| {family} | {len(rows)} | {sum(j.beside_the_bound for j in rows)} | "
            f"{passed}/{expected} | {_worst_refused(rows)} | {statistics.median(calls):.0f} "
            f"({max(calls):.0f}) | {over} | {ratio:.2f} | "
            f"{max(r.failed_spend for r in ten):.2f}, {max(r.api_calls_per_hour for r in ten):.0f}"
            f" | {max(r.failed_spend for r in sig):.2f}, "
            f"{max(r.api_calls_per_hour for r in sig):.0f} |"
        )
    failures = [(j, j.failed()) for j in judged if j.failed()]
    lines.append("")
    if not failures:
        lines.append("Every expected goal PASS on every held-out trace.")
    for j, names in failures:
        g = {goal.name: goal for goal in j.result.goals}
        detail = "; ".join(f"{n}: {g[n].detail}" for n in names)
        lines.append(f"- FAIL {j.result.name} (top-ups of {j.topup_amount} EUR): {detail}")
    return "\n".join(lines)


def section(judged: list[Judged], seeds: int) -> str:
    """The report as a ``make bench`` section."""
    expected = sum(len(j.expected()) for j in judged)
    failed = sum(len(j.failed()) for j in judged)
    return (
        f"## Held-out traffic (`python -m bench.heldout --seeds {seeds}`)\n\n"
        f"{len(judged)} traces drawn at random, {seeds} per family, none tuned on; the same goals"
        " as above, each expected only where the trace's worst burst fits what the guard can have"
        " in hand within the time it is blind (the floor + one top-up). Goals passed: "
        f"{expected - failed}/{expected}.\n\n" + report(judged)
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.heldout", description=__doc__)
    parser.add_argument("--seeds", type=int, default=8, help="traces per family (8)")
    parser.add_argument("--first-seed", type=int, default=0, help="the first seed (0)")
    parser.add_argument("--families", nargs="+", choices=sorted(FAMILIES), default=list(FAMILIES))
    parser.add_argument("--out", type=Path, help="also write the report (markdown) here")
    parser.add_argument("-q", "--quiet", action="store_true", help="no line per trace")
    args = parser.parse_args(argv)
    # The simulated guards' own warnings (a one-off debit, a reading dropped) are the runs'
    # business, not the report's: thousands of lines would bury it.
    logging.getLogger("topup_guard").setLevel(logging.ERROR)
    started = time.perf_counter()
    progress = (lambda _: None) if args.quiet else print
    judged = judge(args.families, args.seeds, progress, first_seed=args.first_seed)
    text = report(judged)
    text += f"\n\n{len(judged)} traces in {time.perf_counter() - started:.0f} s."
    print(text)
    if args.out is not None:
        args.out.write_text(text + "\n", encoding="utf-8")
    return 1 if any(j.failed() for j in judged) else 0


if __name__ == "__main__":
    sys.exit(main())
