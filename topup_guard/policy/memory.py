"""Burst memory: the spend rates of the last days by time of day. Pure: times are arguments.

Why: a campaign that starts at 09:00 every day is a first-of-its-kind burst only once. Polling
alone sees it a poll interval late; remembering that this quarter-hour brought 0.8 EUR/s on the
previous days lets the policy build the headroom *before* it starts (``decide._headroom``).

What counts as recurring: a quarter-hour slot's rate is expected again only when at least two
earlier days saw it — the second-highest of the days' peaks in that slot, so one exceptional day
(a one-off campaign) is reported (``largest``) but does not make every later day carry its
headroom. Day of week is not modelled: a week of history is seven samples per slot, too few to
split by weekday. Memory is bounded: ``days`` days of 96 slots, a float each.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

SLOT_S = 900.0  # a quarter of an hour
SLOTS_PER_DAY = 96
DAY_S = 86400.0
MIN_DAYS = 2  # a rate is expected again only when this many earlier days saw it


class BurstMemory:
    """Peak short-window spend rate per (UTC day, quarter-hour slot)."""

    def __init__(self, days: int = 7) -> None:
        self.days = days
        self._peaks: dict[int, dict[int, float]] = {}  # day number -> slot -> EUR/s
        # ``expected`` reads only days before today, which the polls of today do not change:
        # its answer is kept per span of slots until a write reaches an earlier day.
        self._memo: tuple[tuple[int, int], int, float] | None = None  # (span, today, rate)

    @staticmethod
    def _where(wall: float) -> tuple[int, int]:
        day, rest = divmod(wall, DAY_S)
        return int(day), min(SLOTS_PER_DAY - 1, int(rest // SLOT_S))

    def observe(self, wall: float, rate: float) -> None:
        """Note a spend rate (EUR/s) seen at Unix time ``wall``."""
        if not (math.isfinite(wall) and math.isfinite(rate)) or rate <= 0:
            return
        day, slot = self._where(wall)
        if self._memo is not None and day < self._memo[1]:
            self._memo = None  # an earlier day changed (a clock set back)
        slots = self._peaks.setdefault(day, {})
        slots[slot] = max(slots.get(slot, 0.0), rate)
        for old in [d for d in self._peaks if d <= day - self.days]:
            del self._peaks[old]
            self._memo = None

    def expected(self, wall_from: float, wall_to: float) -> float:
        """The rate earlier days brought in any slot touched by ``[wall_from, wall_to]``."""
        if not (math.isfinite(wall_from) and math.isfinite(wall_to)) or wall_to < wall_from:
            return 0.0
        span = (math.floor(wall_from / SLOT_S), math.floor(wall_to / SLOT_S))
        if self._memo is not None and self._memo[0] == span:
            return self._memo[2]
        best = self._expected(wall_from, wall_to)
        self._memo = (span, self._where(wall_from)[0], best)
        return best

    def _expected(self, wall_from: float, wall_to: float) -> float:
        today, _ = self._where(wall_from)
        best = 0.0
        t = wall_from
        while True:
            _, slot = self._where(t)
            seen = sorted(
                (slots.get(slot, 0.0) for day, slots in self._peaks.items() if day < today),
                reverse=True,
            )
            if len(seen) >= MIN_DAYS:
                best = max(best, seen[MIN_DAYS - 1])
            if t >= wall_to:
                return best
            t = min(wall_to, (math.floor(t / SLOT_S) + 1) * SLOT_S)

    def largest(self) -> float:
        """The largest burst remembered (EUR/s), for reports and the feasibility bound."""
        return max((r for slots in self._peaks.values() for r in slots.values()), default=0.0)

    # --- persistence (the engine writes it beside the ledger) -------------------------------
    def to_dict(self) -> dict[str, object]:
        return {
            "version": 1,
            "days": self.days,
            "peaks": {
                str(d): {str(s): r for s, r in slots.items()} for d, slots in self._peaks.items()
            },
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> BurstMemory:
        """Rebuild from ``to_dict``; anything malformed is skipped, never an error."""
        days = data.get("days", 7)
        memory = cls(days if isinstance(days, int) and 0 < days <= 60 else 7)
        peaks = data.get("peaks")
        if not isinstance(peaks, Mapping):
            return memory
        for d, slots in peaks.items():
            if not (isinstance(d, str) and d.lstrip("-").isdigit() and isinstance(slots, Mapping)):
                continue
            for s, r in slots.items():
                ok = isinstance(s, str) and s.isdigit() and 0 <= int(s) < SLOTS_PER_DAY
                if ok and isinstance(r, int | float) and math.isfinite(r) and r > 0:
                    memory._peaks.setdefault(int(d), {})[int(s)] = float(r)
        return memory
