"""What the ledger's attempts use of the caps (``limits.usage``): dry runs never, unknown credits
at the largest figure known."""

from __future__ import annotations

from decimal import Decimal

import pytest

from topup_guard import limits
from topup_guard.ledger.base import Attempt, AttemptState

D = Decimal
NOW = 1_000_000.0
LIMITS = limits.Limits(
    max_per_hour=3, max_per_day=10, max_daily_amount=D(200), breaker_threshold=3,
    breaker_cooldown=600.0,
)  # fmt: skip


def attempt(
    attempt_id: int,
    state: AttemptState,
    *,
    credited: str | None = None,
    expected: str | None = None,
    age: float = 60.0,
) -> Attempt:
    return Attempt(
        attempt_id=attempt_id,
        state=state,
        created_wall=NOW - age,
        updated_wall=NOW - age + 1,
        epoch=1,
        holder="test:1",
        balance_before=D(5),
        expected_amount=None if expected is None else D(expected),
        credited=None if credited is None else D(credited),
        evidence=None,
        detail="",
        reason="",
    )


def test_dry_runs_never_count_against_the_caps() -> None:
    dry = [attempt(i, AttemptState.DRY_RUN, expected="50") for i in range(1, 30)]
    u = limits.usage(dry, NOW, assumed_amount=D(50))
    assert (u.last_hour, u.last_day, u.amount_last_day) == (0, 0, D(0))
    assert limits.topups_allowed(u, LIMITS, D(50)) == 3


def test_dry_runs_neither_break_nor_extend_a_failure_streak() -> None:
    attempts = [
        attempt(1, AttemptState.FAILED),
        attempt(2, AttemptState.DRY_RUN),
        attempt(3, AttemptState.UNCONFIRMED),
        attempt(4, AttemptState.DRY_RUN),
    ]
    u = limits.usage(attempts, NOW)
    assert u.consecutive_failures == 2
    assert u.last_failure_wall == attempts[2].updated_wall


@pytest.mark.parametrize(
    ("state", "credited", "expected", "assumed", "counted"),
    [
        (AttemptState.SUCCEEDED, "50", None, None, "50"),
        (AttemptState.SUCCEEDED, "50", "10", "10", "50"),  # the credit seen was larger
        # Issue 9: a wrongly learnt 0.12 EUR must not undercount a 50 EUR charge.
        (AttemptState.SUCCEEDED, "0.12", None, "50", "50"),
        (AttemptState.SUCCEEDED, None, None, "50", "50"),  # confirmed, credit not seen yet
        (AttemptState.UNKNOWN, None, None, "50", "50"),
        (AttemptState.UNKNOWN, None, "10", "50", "50"),
        (AttemptState.UNKNOWN, None, "50", "10", "50"),
        (AttemptState.PENDING, None, "20", None, "20"),
        (AttemptState.UNCONFIRMED, None, None, "50", "50"),
        (AttemptState.UNCONFIRMED, None, None, None, "0"),  # nothing known: the count caps it
        (AttemptState.FAILED, None, "50", "50", "0"),  # a known refusal charged nothing
        (AttemptState.DRY_RUN, None, "50", "50", "0"),
    ],
)
def test_a_charge_is_counted_at_the_largest_figure_known(
    state: AttemptState,
    credited: str | None,
    expected: str | None,
    assumed: str | None,
    counted: str,
) -> None:
    a = attempt(1, state, credited=credited, expected=expected)
    u = limits.usage([a], NOW, assumed_amount=None if assumed is None else D(assumed))
    assert u.amount_last_day == D(counted)
    counts = state.may_have_charged
    assert (u.last_hour, u.last_day) == ((1, 1) if counts else (0, 0))


def test_the_eur_cap_counts_every_euro_that_may_have_left_the_card() -> None:
    """Issue 9: 3 x 50 EUR charged, two of them with an unknown credit, must count 150 EUR."""
    attempts = [
        attempt(1, AttemptState.SUCCEEDED, credited="50", age=7200),
        attempt(2, AttemptState.UNCONFIRMED, age=5000),
        attempt(3, AttemptState.UNKNOWN, age=30),
        attempt(4, AttemptState.FAILED, age=20),
        attempt(5, AttemptState.DRY_RUN, expected="50", age=10),
    ]
    u = limits.usage(attempts, NOW, assumed_amount=D(50))
    assert u.amount_last_day == D(150)
    assert (u.last_hour, u.last_day) == (1, 3)
    assert limits.topups_allowed(u, LIMITS, D(50)) == 1  # 200 EUR a day: one more 50 EUR


def test_attempts_older_than_a_day_are_not_counted() -> None:
    attempts = [attempt(1, AttemptState.SUCCEEDED, credited="50", age=limits.DAY + 1)]
    u = limits.usage(attempts, NOW, assumed_amount=D(50))
    assert (u.last_hour, u.last_day, u.amount_last_day) == (0, 0, D(0))


def test_an_attempt_in_the_future_still_counts() -> None:
    """A wall clock that jumped back leaves entries ahead of now: conservative, they count."""
    u = limits.usage([attempt(1, AttemptState.SUCCEEDED, credited="50", age=-3600)], NOW)
    assert (u.last_hour, u.last_day, u.amount_last_day) == (1, 1, D(50))
