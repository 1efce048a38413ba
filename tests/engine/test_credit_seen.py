"""Verification by balance: which readings prove that a top-up's credit arrived."""

from __future__ import annotations

from decimal import Decimal

import pytest

from topup_guard.topup import credit_seen

D = Decimal


@pytest.mark.parametrize(
    ("before", "observed", "elapsed", "rate", "expected", "seen"),
    [
        # the credit, with spend since allowed for: 10 - 0.5*20 + 50 = 50
        ("10", "50", 20, 0.5, "50", "50.00"),
        # no credit: the balance only fell by the spend
        ("10", "0.5", 20, 0.5, "50", None),
        # a refund of 2 EUR is not a 50 EUR top-up
        ("10", "11", 2, 0.5, "50", None),
        # Vonage's auto-reload landing too: two credits; still "seen" (the money is there)
        ("10", "110", 0, 0.0, "50", "100.00"),
        # amount unknown: any rise above the spend-adjusted balance counts
        ("10", "10.02", 0, 0.0, None, "0.02"),
        # postpaid, below zero: the step is what matters
        ("-20", "30", 0, 0.0, "50", "50.00"),
    ],
)
def test_credit_is_seen_only_when_the_balance_shows_it(
    before: str, observed: str, elapsed: float, rate: float, expected: str | None, seen: str | None
) -> None:
    got = credit_seen(D(before), D(observed), elapsed, rate, D(expected) if expected else None)
    assert got == (D(seen) if seen else None)
