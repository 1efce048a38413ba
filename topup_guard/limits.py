"""Caps and the breaker, computed from the ledger's attempts — never from memory, so a restart
cannot reset them. Pure functions of (attempts, settings, now)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

from topup_guard.ledger.base import Attempt, AttemptState

HOUR = 3600.0
DAY = 86400.0


@dataclass(frozen=True, slots=True)
class Limits:
    max_per_hour: int
    max_per_day: int
    max_daily_amount: Decimal
    breaker_threshold: int
    breaker_cooldown: float


@dataclass(frozen=True, slots=True)
class Usage:
    last_hour: int
    last_day: int
    amount_last_day: Decimal
    consecutive_failures: int
    last_failure_wall: float | None


def usage(
    attempts: Sequence[Attempt], now_wall: float, *, assumed_amount: Decimal | None = None
) -> Usage:
    """What the attempts of the last day used. ``attempts`` in attempt order.

    DRY_RUN entries never count: a dry run is an audit of what would have happened, and caps
    that a dry run used up would silence it. Money that may have left the card is counted at
    the largest figure known for it — credit seen, amount expected, or ``assumed_amount`` (the
    configured or learnt one) — so a cap never undercounts a charge whose credit is unknown.
    A wall clock that jumped back leaves entries "in the future": they still count (conservative).
    """
    counted = [a for a in attempts if a.state.may_have_charged]
    hour = [a for a in counted if a.created_wall >= now_wall - HOUR]
    day = [a for a in counted if a.created_wall >= now_wall - DAY]
    amount = sum((_charged(a, assumed_amount) for a in day), Decimal(0))
    failures = 0
    last_failure: float | None = None
    for a in reversed([a for a in attempts if a.state is not AttemptState.DRY_RUN]):
        if a.state in (AttemptState.FAILED, AttemptState.UNCONFIRMED):
            failures += 1
            last_failure = a.updated_wall if last_failure is None else last_failure
        elif a.state is AttemptState.SUCCEEDED:
            break
    return Usage(len(hour), len(day), amount, failures, last_failure)


def _charged(a: Attempt, assumed: Decimal | None) -> Decimal:
    figures = [x for x in (a.credited, a.expected_amount, assumed) if x is not None]
    return max(figures, default=Decimal(0))


class LocalSpend:
    """This process's own top-ups on the monotonic clock: a second count the wall clock can't
    move. A wall clock jumping forward would age the ledger's entries and let the hour cap allow
    another hour's worth; taking the larger of the two counts closes that (within one process).
    """

    def __init__(self) -> None:
        self._spent: list[tuple[float, Decimal]] = []

    def record(self, now: float, amount: Decimal | None) -> None:
        self._spent.append((now, amount or Decimal(0)))
        self._spent = [(t, a) for t, a in self._spent if t >= now - DAY]

    def merged(self, u: Usage, now: float) -> Usage:
        hour = sum(1 for t, _ in self._spent if t >= now - HOUR)
        day = [a for t, a in self._spent if t >= now - DAY]
        return Usage(
            last_hour=max(u.last_hour, hour),
            last_day=max(u.last_day, len(day)),
            amount_last_day=max(u.amount_last_day, sum(day, Decimal(0))),
            consecutive_failures=u.consecutive_failures,
            last_failure_wall=u.last_failure_wall,
        )


def breaker_open(u: Usage, limits: Limits, now_wall: float) -> bool:
    """Open after N consecutive failures; after the cooldown one trial is allowed (half-open)."""
    if u.consecutive_failures < limits.breaker_threshold:
        return False
    if u.last_failure_wall is None:
        return True
    return now_wall - u.last_failure_wall < limits.breaker_cooldown


def topups_allowed(u: Usage, limits: Limits, amount: Decimal | None) -> int:
    """How many more top-ups the count and EUR caps allow right now."""
    left = min(limits.max_per_hour - u.last_hour, limits.max_per_day - u.last_day)
    if amount is not None and amount > 0:
        by_amount = int((limits.max_daily_amount - u.amount_last_day) // amount)
        left = min(left, by_amount)
    return max(0, left)
