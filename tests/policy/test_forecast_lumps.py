"""One-off debits kept out of the spend rate (``SpendTracker.add(lump=True)``)."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from topup_guard.model import BalanceSample
from topup_guard.policy import SpendTracker

D = Decimal


def steady(tracker: SpendTracker, until: int = 100) -> Decimal:
    """0.1 EUR/s from 100 EUR, a reading every 10 s up to ``until``; returns the last balance."""
    balance = D(100)
    for t in range(0, until + 1, 10):
        balance = D(100) - D(t) / 10
        tracker.add(BalanceSample(float(t), balance))
    return balance


@pytest.mark.parametrize(("lump", "rate"), [(True, 0.1), (False, (10 + 40) / 110)])
def test_a_one_off_debit_marked_as_a_lump_stays_out_of_the_rate(lump: bool, rate: float) -> None:
    tracker = SpendTracker()
    last = steady(tracker)  # 90 EUR at t = 100
    tracker.add(BalanceSample(110.0, last - 40), lump=lump)  # a 40 EUR rental
    f = tracker.forecast(110.0)
    assert f is not None
    assert f.rate == pytest.approx(rate)
    assert f.balance == D(50)  # the money is gone either way
    assert tracker.lumps_total == (D(40) if lump else D(0))


def test_a_lump_is_never_the_peak_rate() -> None:
    tracker = SpendTracker()
    last = steady(tracker)
    tracker.add(BalanceSample(110.0, last - 40), lump=True)
    tracker.add(BalanceSample(120.0, last - 41))
    f = tracker.forecast(120.0)
    assert f is not None
    assert f.peak_rate == pytest.approx(0.1)
    assert f.spend_total == D(11)  # the lump is not spend either


def test_the_rate_elsewhere_stands_in_for_the_lumps_gap() -> None:
    """The lump's gap counts as of unknown spend: its seconds are left out of the covered time,
    so the gap's own small flow does not dilute the rate to below the true one."""
    tracker = SpendTracker()
    last = steady(tracker)
    tracker.add(BalanceSample(200.0, last - 40), lump=True)  # 100 s gap, 40 EUR lump
    f = tracker.forecast(200.0)
    assert f is not None
    assert f.rate == pytest.approx(0.1)


def test_lump_on_a_rise_is_an_ordinary_credit() -> None:
    tracker = SpendTracker()
    last = steady(tracker)
    credit = tracker.add(BalanceSample(110.0, last + 50), lump=True)
    assert credit is not None
    assert credit.amount == D(50)
    assert tracker.lumps_total == 0


def test_a_lump_as_the_only_gap_gives_no_rate() -> None:
    tracker = SpendTracker()
    tracker.add(BalanceSample(0.0, D(100)))
    tracker.add(BalanceSample(10.0, D(60)), lump=True)
    f = tracker.forecast(10.0)
    assert f is not None
    assert (f.rate, f.peak_rate) == (0.0, 0.0)
    assert f.time_to_exhaustion == float("inf")


def test_lumps_add_up() -> None:
    tracker = SpendTracker()
    tracker.add(BalanceSample(0.0, D(100)))
    tracker.add(BalanceSample(10.0, D(60)), lump=True)
    tracker.add(BalanceSample(20.0, D("59.5")))
    tracker.add(BalanceSample(30.0, D("29.5")), lump=True)
    assert tracker.lumps_total == D(70)


@given(
    st.lists(st.decimals(min_value="0", max_value="5", places=2), min_size=2, max_size=30),
    st.integers(min_value=0),
    st.decimals(min_value="0.01", max_value="1e6", places=2),
)
def test_a_lump_never_raises_the_rate(drops: list[Decimal], where: int, size: Decimal) -> None:
    """Whatever the flow around it, a drop marked as a lump leaves the rate at most what the
    flow alone gives (the same series without the lump's gap)."""
    i = where % len(drops)
    plain, lumped = SpendTracker(), SpendTracker()
    balance, t = D(10**7), 0.0
    plain.add(BalanceSample(t, balance))
    lumped.add(BalanceSample(t, balance))
    offset = D(0)
    for j, drop in enumerate(drops):
        t += 10.0
        balance -= drop
        if j == i:
            offset = size
            lumped.add(BalanceSample(t, balance - offset), lump=True)
            plain.add(BalanceSample(t, balance))
            continue
        lumped.add(BalanceSample(t, balance - offset))
        plain.add(BalanceSample(t, balance))
    a, b = plain.forecast(t), lumped.forecast(t)
    assert a is not None
    assert b is not None
    # Without the lump's gap the covered time is shorter, so the rate can be a little higher
    # (the flow of that one gap is unknown); never by more than that gap's flow is worth.
    assert b.rate <= a.rate * len(drops) / max(1, len(drops) - 1) + 1e-9
    assert lumped.lumps_total == size + drops[i]  # the whole drop of its gap


@pytest.mark.parametrize("lump", [True, False])
def test_seconds_of_unknown_spend_in_the_peak_window_spend_at_the_sustained_rate(
    lump: bool,
) -> None:
    """A 30-s gap whose spend is unknown (a lump; a credit no top-up announced) and then one
    second of spend: the peak is the 30-s window's, its unknown 29 s at the sustained rate (11 EUR
    over the 101 s of known spend), not the one second's own 1 EUR/s."""
    tracker = SpendTracker()
    last = steady(tracker)  # 90 EUR at t = 100
    unknown = BalanceSample(130.0, last - 40) if lump else BalanceSample(130.0, last + 50)
    tracker.add(unknown, lump=lump)
    tracker.add(BalanceSample(131.0, unknown.balance - 1))
    f = tracker.forecast(131.0)
    assert f is not None
    sustained = (100 * 0.1 + 1) / 101
    assert f.rate_short == pytest.approx(sustained)  # the windows leave the gap out, as before
    assert f.peak_rate == pytest.approx((29 * sustained + 1) / 30)
