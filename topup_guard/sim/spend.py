"""Scenario spend as a piecewise-constant rate, cut into constant-rate segments.

A profile is a list of phases (a rate between ``start`` and ``end``) plus bursts (an extra rate
for ``duration`` seconds from ``at``). Overlapping rates add up. With ``repeat_every`` the pattern
over ``[0, repeat_every)`` repeats forever, so a one-hour day of traffic can drive a week-long run.

The account turns each segment into whole messages (``messages_in``): spend is quantised the way
Vonage bills it, one message price at a time, and the carry between segments keeps the total exact
whatever the segmentation (a lazy server advances in irregular steps, a backtest in regular ones).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal

_EPS = 1e-9


@dataclass(frozen=True, slots=True)
class Phase:
    """A steady rate in EUR/s over ``[start, end)`` seconds of simulated time."""

    start: float
    end: float
    rate: Decimal


@dataclass(frozen=True, slots=True)
class Burst:
    """An extra rate in EUR/s over ``[at, at + duration)``: a campaign send."""

    at: float
    duration: float
    rate: Decimal


class SpendProfile:
    """The scenario's demand rate as a function of simulated time."""

    def __init__(
        self,
        phases: list[Phase] | None = None,
        bursts: list[Burst] | None = None,
        repeat_every: float | None = None,
    ) -> None:
        if repeat_every is not None and repeat_every <= 0:
            raise ValueError("repeat_every must be positive")
        self.repeat_every = repeat_every
        spans = [(p.start, p.end, p.rate) for p in phases or []]
        spans += [(b.at, b.at + b.duration, b.rate) for b in bursts or []]
        self._spans = [(s, e, r) for s, e, r in spans if e > s and r != 0]
        cuts = {s for s, _, _ in self._spans} | {e for _, e, _ in self._spans}
        if repeat_every is not None:
            cuts = {c for c in cuts if 0 < c < repeat_every} | {repeat_every}
        self._cuts = sorted(c for c in cuts if math.isfinite(c))

    @property
    def idle(self) -> bool:
        """True when the profile never demands anything (a trace-only backtest account)."""
        return not self._spans

    def rate_at(self, t: float) -> Decimal:
        """EUR/s demanded at simulated time ``t``."""
        u = self._pattern_time(t)
        return sum((r for s, e, r in self._spans if s <= u < e), Decimal(0))

    def segments(self, t0: float, t1: float) -> Iterator[tuple[float, float, Decimal]]:
        """Constant-rate pieces ``(start, end, rate)`` covering ``[t0, t1)``."""
        t = t0
        while t < t1:
            u = self._pattern_time(t)
            nxt = next((c for c in self._cuts if c > u + _EPS), math.inf)
            end = min(t1, t + (nxt - u))
            if end <= t:  # float noise at a cut: never loop without progress
                end = min(t1, t + _EPS)
            yield t, end, self.rate_at(t + (end - t) / 2)
            t = end

    def _pattern_time(self, t: float) -> float:
        return t % self.repeat_every if self.repeat_every is not None else t


@dataclass(frozen=True, slots=True)
class MessageRun:
    """``count`` equally spaced messages; arithmetic instead of a list keeps long runs cheap."""

    count: int
    first: float
    spacing: float

    def time_of(self, index: int) -> float:
        """Time of message ``index`` (0-based)."""
        return self.first + index * self.spacing


def messages_in(
    carry: float, t0: float, t1: float, rate: Decimal, price: Decimal
) -> tuple[MessageRun, float]:
    """The whole messages a constant ``rate`` buys in ``(t0, t1]`` at ``price`` each.

    ``carry`` is the fraction of a message already accrued before ``t0``; the new carry is
    returned with the run, so consecutive calls never lose or double a fraction.
    """
    if rate <= 0 or t1 <= t0:
        return MessageRun(0, t1, 0.0), carry
    per_s = float(rate / price)
    total = carry + per_s * (t1 - t0)
    n = math.floor(total + _EPS)
    first = min(t1, t0 + (1 - carry) / per_s)
    return MessageRun(n, first, 1 / per_s), max(0.0, total - n)
