"""When a cap or the breaker lets the guard top up again, from the ledger's attempts. Pure.

The notifications say *when* a blocked guard can act again (``ConditionsChanged.clears_at``)
rather than naming a setting. The answers follow ``limits`` exactly: the breaker allows one
trial ``breaker_cooldown`` after the last failed or unconfirmed top-up; a count cap frees up when
the oldest counted top-up in its rolling window ages out, the EUR cap when enough EUR has. Each
cap only loosens as time passes without new top-ups, so the moment all of them allow one more is
the latest of their separate moments. ``None`` means never by itself (a cap set to 0, or an
amount larger than the EUR cap) or not blocked at all.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal

from topup_guard.ledger.base import Attempt, AttemptState
from topup_guard.limits import DAY, HOUR, Limits, Usage


def breaker_clears_at(u: Usage, limits: Limits) -> float | None:
    """Unix seconds when the open breaker allows its trial top-up (None: not open, or unknown)."""
    if u.consecutive_failures < limits.breaker_threshold or u.last_failure_wall is None:
        return None
    return u.last_failure_wall + limits.breaker_cooldown


def _count_frees_at(walls: list[float], window: float, cap: int) -> float | None:
    """When fewer than ``cap`` of ``walls`` (creation times) remain inside ``window``."""
    if cap <= 0:
        return None
    if len(walls) < cap:
        return 0.0
    # The count drops below the cap once the (len - cap + 1)-th oldest has aged out.
    return sorted(walls)[len(walls) - cap] + window


def _amount_frees_at(
    day: list[tuple[float, Decimal]], cap: Decimal, amount: Decimal
) -> float | None:
    if amount > cap:
        return None
    total = sum((a for _, a in day), Decimal(0))
    at = 0.0
    for wall, spent in sorted(day):
        if total + amount <= cap:
            break
        total -= spent
        at = wall + DAY
    return at


def caps_clear_at(
    attempts: Sequence[Attempt],
    limits: Limits,
    now_wall: float,
    amount: Decimal | None,
    *,
    dry_run: bool = False,
) -> float | None:
    """Unix seconds when every cap allows one more top-up of ``amount`` (None: never by itself).

    Counts the same attempts as ``limits.usage``; a time at or before ``now_wall`` means the caps
    already allow one.
    """
    counted = [
        a
        for a in attempts
        if a.state.may_have_charged or (dry_run and a.state is AttemptState.DRY_RUN)
    ]
    hour = [a.created_wall for a in counted if a.created_wall >= now_wall - HOUR]
    day = [a for a in counted if a.created_wall >= now_wall - DAY]
    moments = [
        _count_frees_at(hour, HOUR, limits.max_per_hour),
        _count_frees_at([a.created_wall for a in day], DAY, limits.max_per_day),
    ]
    if amount is not None and amount > 0:
        spent = [(a.created_wall, a.amount_for_caps or Decimal(0)) for a in day]
        moments.append(_amount_frees_at(spent, limits.max_daily_amount, amount))
    if any(m is None for m in moments):
        return None
    return max(m for m in moments if m is not None)
