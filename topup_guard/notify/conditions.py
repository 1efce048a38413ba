"""De-duplication of condition alerts: announce a start, repeat rarely, announce the end.

The engine reports the full set of active conditions every cycle (``ConditionsChanged``); posting
each snapshot would flood the channel every few seconds. The tracker turns snapshots into
transitions: a condition is announced when it starts, repeated at most every ``repeat`` seconds
while it lasts (a reminder, since people scroll past alerts), and announced as recovered when it
ends. Identical snapshots send nothing; a changed detail text alone is not news either, because
details carry live numbers (balances) that change every cycle. Time is an argument, so the
tracker is pure and tests drive it with a virtual clock.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from topup_guard.events import Condition
from topup_guard.notify.messages import (
    SlackMessage,
    condition_recovered,
    condition_repeated,
    condition_started,
)


@dataclass(slots=True)
class _Active:
    since: float  # clock.now() when the condition started
    last_sent: float  # clock.now() of the latest announcement (start or repeat)
    detail: str


class ConditionTracker:
    def __init__(self, repeat: float) -> None:
        self.repeat = repeat
        self._active: dict[Condition, _Active] = {}

    @property
    def active(self) -> frozenset[Condition]:
        return frozenset(self._active)

    def update(
        self, active: Mapping[Condition, str], now: float, wall: float = 0.0
    ) -> list[SlackMessage]:
        """Messages for the transitions from the previous snapshot to ``active`` at ``now``."""
        out: list[SlackMessage] = []
        # Condition order, not mapping order, so one snapshot always yields the same sequence.
        for condition in Condition:
            state = self._active.get(condition)
            if condition not in active:
                if state is not None:
                    del self._active[condition]
                    out.append(condition_recovered(condition, now - state.since, wall))
                continue
            detail = str(active[condition])
            if state is None:
                self._active[condition] = _Active(since=now, last_sent=now, detail=detail)
                out.append(condition_started(condition, detail, wall))
                continue
            state.detail = detail
            if now - state.last_sent >= self.repeat:
                state.last_sent = now
                out.append(condition_repeated(condition, detail, now - state.since, wall))
        return out
