"""When the caps and the breaker let the guard top up again, computed from ledger attempts."""

from __future__ import annotations

from decimal import Decimal

import pytest

from topup_guard.clears import breaker_clears_at, caps_clear_at
from topup_guard.ledger.base import Attempt, AttemptState
from topup_guard.limits import Limits, breaker_open, topups_allowed, usage

NOW = 1_800_000_000.0
LIMITS = Limits(
    max_per_hour=2,
    max_per_day=5,
    max_daily_amount=Decimal("200"),
    breaker_threshold=3,
    breaker_cooldown=3600.0,
)


def attempt(i: int, ago: float, state: AttemptState = AttemptState.SUCCEEDED) -> Attempt:
    return Attempt(
        attempt_id=i,
        state=state,
        created_wall=NOW - ago,
        updated_wall=NOW - ago + 2,
        epoch=0,
        holder="h",
        balance_before=Decimal("5"),
        expected_amount=Decimal("50"),
        credited=Decimal("50") if state is AttemptState.SUCCEEDED else None,
        evidence=None,
        detail="",
        reason="",
    )


@pytest.mark.parametrize(
    ("ages", "clears_in"),
    [
        ([1000, 200], 2600.0),  # hour cap of 2: the older one leaves the hour in 2600 s
        ([3000, 1000, 200], 2600.0),  # three in the hour (a jump back): two must age out
        # 250 EUR in the day: one more 50 fits the 200 EUR cap once the two oldest have left
        ([80_000, 70_000, 60_000, 500, 100], 16_400.0),
        ([500], None),  # not blocked: any time at or before now
    ],
)
def test_caps_clear_when_enough_counted_topups_leave_their_windows(
    ages: list[int], clears_in: float | None
) -> None:
    attempts = [attempt(i, ago) for i, ago in enumerate(ages)]
    at = caps_clear_at(attempts, LIMITS, NOW, Decimal("50"))
    assert at is not None
    if clears_in is None:
        assert at <= NOW
        return
    assert at == pytest.approx(NOW + clears_in)
    # The answer agrees with the caps themselves: blocked just before, allowed at that moment.
    assert topups_allowed(usage(attempts, at - 1), LIMITS, Decimal("50")) == 0
    assert topups_allowed(usage(attempts, at + 0.001), LIMITS, Decimal("50")) >= 1


def test_a_cap_of_zero_never_clears_by_itself() -> None:
    limits = Limits(0, 5, Decimal("200"), 3, 3600.0)
    assert caps_clear_at([attempt(1, 100)], limits, NOW, Decimal("50")) is None


def test_the_breaker_allows_its_trial_one_cooldown_after_the_last_failure() -> None:
    failures = [attempt(i, ago, AttemptState.FAILED) for i, ago in enumerate([900, 600, 300])]
    u = usage(failures, NOW)
    at = breaker_clears_at(u, LIMITS)
    assert at == NOW - 300 + 2 + 3600  # updated_wall of the last failure + cooldown
    assert breaker_open(u, LIMITS, at - 1)
    assert not breaker_open(u, LIMITS, at)
    assert breaker_clears_at(usage(failures[:2], NOW), LIMITS) is None  # not open
