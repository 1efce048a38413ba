"""Spend forecast: table-driven cases from prior-art §4.6 and property tests."""

from __future__ import annotations

import math
import random
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from topup_guard.model import BalanceSample
from topup_guard.policy import Credit, Forecast, SpendTracker, forecast

Series = list[tuple[float, str]]


def steady(rate: str, *, start: str = "100", every: float = 10.0, n: int = 121) -> Series:
    """Balance falling at ``rate`` EUR/s, polled every ``every`` seconds."""
    return [(i * every, str(Decimal(start) - Decimal(rate) * Decimal(i * every))) for i in range(n)]


def run(series: Series, now: float | None = None, **kw: float) -> Forecast:
    samples = [BalanceSample(t, Decimal(b)) for t, b in series]
    result = forecast(samples, series[-1][0] if now is None else now, **kw)
    assert result is not None
    return result


def burst() -> Series:
    base = steady("0.01", start="500", n=301)  # 50 min at 0.01 EUR/s
    t0, b0 = base[-1][0], Decimal(base[-1][1])
    return base + [(t0 + 10 * i, str(b0 - Decimal(10 * i))) for i in range(1, 19)]  # 3 min at 1/s


def credit_step() -> Series:
    series = steady("0.05", n=121)
    return [(t, str(Decimal(b) + (50 if t >= 600 else 0))) for t, b in series]


def quantised() -> Series:
    """A 0.0075 EUR message every 120 s, polled every 10 s, for an hour."""
    return [(t, str(Decimal(50) - Decimal("0.0075") * (t // 120))) for t in range(0, 3601, 10)]


def sparse() -> Series:
    """Two messages in 30 minutes."""
    return [
        (t, "20" if t < 600 else "19.9925" if t < 1500 else "19.985") for t in range(0, 1801, 30)
    ]


def irregular() -> Series:
    gaps = [1, 37, 3, 50, 12, 8, 29, 44, 2, 19] * 8
    times = [float(sum(gaps[:i])) for i in range(len(gaps) + 1)]
    return [(t, str(Decimal(100) - Decimal("0.05") * Decimal(t))) for t in times]


def missing_polls() -> Series:
    series = steady("0.05", n=121)
    return [(t, b) for t, b in series if not 300 < t < 1200]  # 15 minutes without an answer


def postpaid() -> Series:
    return steady("0.02", start="-10", n=61)


@dataclass(frozen=True)
class Case:
    name: str
    series: Callable[[], Series]
    check: Callable[[Forecast], None]


def _steady(f: Forecast) -> None:
    assert f.rate == pytest.approx(0.05)
    assert f.rate_short == pytest.approx(f.rate_long)
    assert f.time_to_exhaustion == pytest.approx(40 / 0.05)
    assert f.confidence > 0.9
    assert f.credits_total == 0


def _burst(f: Forecast) -> None:
    assert f.rate_short == pytest.approx((180 + 120 * 0.01) / 300)
    assert f.rate_long < f.rate_short / 2
    assert f.rate == f.rate_short
    assert f.peak_rate == pytest.approx(1.0)
    assert f.confidence < 0.9  # the windows disagree


def _credit_step(f: Forecast) -> None:
    assert f.rate == pytest.approx(0.05)  # the rise neither offsets spend nor hides it
    assert f.credits_total > 49
    assert f.balance == Decimal("90")


def _quantised(f: Forecast) -> None:
    assert f.rate_long == pytest.approx(0.0075 / 120, rel=0.05)
    assert f.rate > 0
    assert f.time_to_exhaustion < math.inf


def _sparse(f: Forecast) -> None:
    assert f.rate_long == pytest.approx(0.015 / 1800)
    assert f.rate_short == 0
    assert f.rate > 0  # few drops: a small rate, not zero
    assert f.confidence < 0.5


def _irregular(f: Forecast) -> None:
    assert f.rate_short == pytest.approx(0.05)
    assert f.rate_long == pytest.approx(0.05)


def _missing(f: Forecast) -> None:
    assert f.rate == pytest.approx(0.05)
    assert f.peak_rate == pytest.approx(0.05)  # the long gap spreads its spend over its span


def _postpaid(f: Forecast) -> None:
    assert f.balance < 0
    assert f.rate == pytest.approx(0.02)
    assert f.time_to_exhaustion == 0
    assert f.time_to(Decimal(-100)) == pytest.approx(78 / 0.02)


CASES = [
    Case("steady", lambda: steady("0.05"), _steady),
    Case("burst", burst, _burst),
    Case("credit_step", credit_step, _credit_step),
    Case("quantised_charges", quantised, _quantised),
    Case("sparse_traffic", sparse, _sparse),
    Case("irregular_polls", irregular, _irregular),
    Case("missing_polls", missing_polls, _missing),
    Case("postpaid_negative_balance", postpaid, _postpaid),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_forecast_cases(case: Case) -> None:
    case.check(run(case.series()))


def test_no_forecast_before_two_samples() -> None:
    tracker = SpendTracker()
    assert tracker.forecast(0) is None
    tracker.add(BalanceSample(0, Decimal(10)))
    assert tracker.forecast(0) is None
    tracker.add(BalanceSample(0, Decimal(9)))  # same instant: still no elapsed time
    assert tracker.forecast(0) is None


def test_add_returns_the_credit_and_remembers_it() -> None:
    tracker = SpendTracker()
    assert tracker.add(BalanceSample(0, Decimal(10))) is None
    assert tracker.add(BalanceSample(10, Decimal(9))) is None
    assert tracker.add(BalanceSample(20, Decimal(59))) == Credit(20, Decimal(50))
    assert tracker.add(BalanceSample(30, Decimal(58))) is None
    assert tracker.last_credit() == Credit(20, Decimal(50))


def test_expected_credit_recovers_the_spend_hidden_by_the_step() -> None:
    tracker = SpendTracker()
    for t, b in steady("0.05", n=31):
        tracker.add(BalanceSample(t, Decimal(b)))
    tracker.note_expected_credit(Decimal(50))
    credit = tracker.add(BalanceSample(310, Decimal("84.5") + 50))  # 0.5 spent in the gap
    f = tracker.forecast(310)
    assert credit == Credit(310, Decimal(50))
    assert f is not None
    assert f.spend_total == Decimal("15.5")
    assert f.credits_total == Decimal(50)
    assert f.rate == pytest.approx(0.05)


def test_expected_credit_waits_for_a_lagging_step() -> None:
    tracker = SpendTracker()
    for t, b in [(0, "20"), (10, "19.5")]:
        tracker.add(BalanceSample(t, Decimal(b)))
    tracker.note_expected_credit(Decimal(50))
    tracker.add(BalanceSample(20, Decimal("19")))  # not reflected yet: a plain drop
    tracker.add(BalanceSample(30, Decimal("68.5")))  # now it is
    f = tracker.forecast(30)
    assert f is not None
    assert f.spend_total == Decimal("1.5")
    assert f.rate == pytest.approx(0.05)


def test_a_small_rise_is_not_taken_for_a_large_expected_credit() -> None:
    tracker = SpendTracker()
    for t, b in [(0, "20"), (10, "19.5")]:
        tracker.add(BalanceSample(t, Decimal(b)))
    tracker.note_expected_credit(Decimal(50))
    tracker.add(BalanceSample(20, Decimal("19.6")))  # a refund, not the top-up
    f = tracker.forecast(20)
    assert f is not None
    assert f.spend_total == Decimal("0.5")  # not 49.9 of imaginary spend
    assert f.rate == pytest.approx(0.05)


def test_an_unknown_expected_credit_is_ignored() -> None:
    tracker = SpendTracker()
    tracker.add(BalanceSample(0, Decimal(20)))
    tracker.note_expected_credit(Decimal(0))
    tracker.add(BalanceSample(10, Decimal(19)))
    tracker.add(BalanceSample(20, Decimal(40)))
    f = tracker.forecast(20)
    assert f is not None
    assert f.spend_total == 1


def test_an_expected_credit_lapses() -> None:
    tracker = SpendTracker(expected_credit_ttl=60)
    for t, b in [(0, "20"), (10, "19")]:
        tracker.add(BalanceSample(t, Decimal(b)))
    tracker.note_expected_credit(Decimal(50))
    tracker.add(BalanceSample(200, Decimal("45")))  # an unrelated reload, long after
    f = tracker.forecast(200)
    assert f is not None
    assert f.spend_total == Decimal(1)  # the credit gap's spend is unknown, not 24


def test_a_stale_latest_sample_lowers_confidence() -> None:
    series = steady("0.05")
    assert run(series, now=series[-1][0] + 3000).confidence < run(series).confidence / 5


def test_invalid_samples_are_refused() -> None:
    tracker = SpendTracker()
    with pytest.raises(ValueError, match="balance"):
        tracker.add(BalanceSample(0, Decimal("NaN")))
    with pytest.raises(ValueError, match="time"):
        tracker.add(BalanceSample(math.inf, Decimal(1)))


def test_clock_going_backwards_counts_as_no_time() -> None:
    tracker = SpendTracker()
    for t, b in [(0, "10"), (10, "9"), (5, "8")]:
        tracker.add(BalanceSample(t, Decimal(b)))
    f = tracker.forecast(10)
    assert f is not None
    assert f.t == 10
    assert f.spend_total == 2


# --- properties ---------------------------------------------------------------------------
balances = st.one_of(
    st.decimals(min_value=-(10**12), max_value=10**12, places=4),
    st.decimals(min_value=-1, max_value=1, places=8),
)
series_strategy = st.lists(
    st.tuples(st.sampled_from([0.0, 1e-6, 0.5, 1.0, 10.0, 1e5]), balances), min_size=2, max_size=40
)


def _tracker(steps: list[tuple[float, Decimal]]) -> SpendTracker:
    tracker = SpendTracker()
    t = 0.0
    for dt, b in steps:
        t += dt
        tracker.add(BalanceSample(t, b))
    return tracker


@given(series_strategy, st.floats(min_value=0, max_value=1e7), balances)
def test_time_to_exhaustion_is_never_negative_or_nan(
    steps: list[tuple[float, Decimal]], later: float, level: Decimal
) -> None:
    tracker = _tracker(steps)
    f = tracker.forecast(sum(dt for dt, _ in steps) + later)
    if f is None:
        return
    for value in (f.time_to_exhaustion, f.time_to(level)):
        assert not math.isnan(value)
        assert value >= 0
    for rate in (f.rate, f.rate_short, f.rate_long, f.peak_rate):
        assert math.isfinite(rate)
        assert rate >= 0
    assert f.rate == max(f.rate_short, f.rate_long)
    assert 0 <= f.confidence <= 1
    assert f.spend_total >= 0
    assert f.credits_total >= 0


@given(series_strategy, st.integers(min_value=1), st.decimals(min_value="0.01", max_value=10**6))
def test_a_credit_step_never_lowers_the_spend_estimate(
    steps: list[tuple[float, Decimal]], where: int, amount: Decimal
) -> None:
    """A credit landing at one instant (two samples, same time) leaves the rate as it was."""
    i = 1 + where % (len(steps) - 1)
    stepped = [*steps[:i], (0.0, steps[i - 1][1] + amount)]
    stepped += [(dt, b + amount) for dt, b in steps[i:]]
    end = sum(dt for dt, _ in steps)
    without, with_credit = _tracker(steps).forecast(end), _tracker(stepped).forecast(end)
    assume(without is not None)
    assert without is not None
    assert with_credit is not None
    assert with_credit.rate >= without.rate * (1 - 1e-9)


@given(series_strategy, st.integers(min_value=1), st.decimals(min_value="0.01", max_value=10**6))
def test_a_noted_top_up_never_lowers_the_spend_estimate(
    steps: list[tuple[float, Decimal]], where: int, amount: Decimal
) -> None:
    """A top-up between two polls, noted by the engine, hides none of that gap's spend."""
    i = 1 + where % (len(steps) - 1)
    drop = steps[i - 1][1] - steps[i][1]
    assume(drop >= 0)  # the top-up is the gap's only rise
    amount = max(amount, 2 * abs(drop) + 1)  # a top-up exceeds the spend of one poll gap
    tracker, plain = SpendTracker(expected_credit_ttl=math.inf), _tracker(steps)
    t = 0.0
    for j, (dt, b) in enumerate(steps):
        t += dt
        if j == i:
            tracker.note_expected_credit(amount)
        tracker.add(BalanceSample(t, b + (amount if j >= i else 0)))
    without, with_credit = plain.forecast(t), tracker.forecast(t)
    assume(without is not None)
    assert without is not None
    assert with_credit is not None
    assert with_credit.rate >= without.rate * (1 - 1e-9)


def test_memory_is_bounded_after_1e5_samples() -> None:
    tracker = SpendTracker(short_window=300, long_window=3600)

    def feed(start: int, stop: int) -> None:
        for i in range(start, stop):
            tracker.add(BalanceSample(i * 5.0, Decimal(1000) - Decimal("0.0075") * (i % 7)))

    feed(0, 90_000)
    tracemalloc.start()  # traced only at the end: tracing the whole run is slow
    try:
        feed(90_000, 92_000)  # every retained sample is now one allocated under tracing
        before, _ = tracemalloc.get_traced_memory()
        feed(92_000, 100_000)
        after, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    f = tracker.forecast(500_000)
    assert f is not None
    assert f.samples <= 3600 / 5 + 2
    assert after - before < 20_000  # bytes: nothing grows with the number of samples


def test_memory_is_bounded_with_equal_or_crowded_timestamps() -> None:
    tracker = SpendTracker(max_samples=1000)
    for i in range(20_000):
        tracker.add(BalanceSample(0.0 if i < 10_000 else i * 1e-6, Decimal(100 - i % 3)))
    f = tracker.forecast(1)
    assert f is not None
    assert f.samples <= 1000


# --- a drop the next reading takes back -----------------------------------------------------


D = Decimal


def _glitched(back: str, *, expected: Decimal | None = None) -> SpendTracker:
    """0.1 EUR/s from 100 EUR read every 10 s to t = 100, a low reading of 70 EUR at t = 110
    (believed), then ``back`` at t = 120 (``expected`` noted before it)."""
    tracker = SpendTracker()
    for t in range(0, 101, 10):
        tracker.add(BalanceSample(float(t), D(100) - D(t) / 10))
    tracker.add(BalanceSample(110.0, D(70)))
    if expected is not None:
        tracker.note_expected_credit(expected)
    tracker.add(BalanceSample(120.0, D(back)))
    return tracker


@pytest.mark.parametrize(("back", "expected"), [("88", None), ("98", D(10))])
def test_a_drop_the_next_reading_takes_back_leaves_the_rate_and_the_peak(
    back: str, expected: Decimal | None
) -> None:
    """Back to 88 EUR (or 98 with a 10 EUR credit noted): the reading of 70 was wrong; the
    balance then was at least 88, so the 20 EUR drop is corrected and never a rate or peak."""
    tracker = _glitched(back, expected=expected)
    f = tracker.forecast(120.0)
    assert f is not None
    assert tracker.reverted_total == D(18)  # 90 -> 70 read, 90 -> 88 spent
    assert f.rate == pytest.approx(0.1)
    # The 2 EUR spent over both gaps is put in the corrected one (as early as the evidence
    # allows): 4 EUR in (80, 110], not the 22 EUR read.
    assert f.peak_rate == pytest.approx(4 / 30)
    assert f.balance == D(back)


@pytest.mark.parametrize("back", ["75", "91"])
def test_a_rise_that_does_not_land_back_on_the_level_before_takes_nothing_back(back: str) -> None:
    """75 EUR is less than half-way back (a credit, spend kept); 91 is above the level before
    the drop (90), which spend alone cannot reach: a credit after a real drop."""
    tracker = _glitched(back)
    f = tracker.forecast(120.0)
    assert f is not None
    assert tracker.reverted_total == 0
    assert f.peak_rate > 0.5  # the 20 EUR drop in 10 s stays the peak


def test_a_credit_expected_but_not_shown_is_not_added_to_the_next_one() -> None:
    """A credit of 10 first seen after a gap where spend hid more than half of it (a rise of
    4.99) is not consumed; the next credit noted must not be read together with it, or its
    rise of 10 would count a phantom 10 EUR spend."""
    tracker = SpendTracker()
    for t in range(0, 51, 10):
        tracker.add(BalanceSample(float(t), D(100) - D(t) / 10))
    tracker.note_expected_credit(D(10))
    tracker.add(BalanceSample(61.0, D("99.99")))  # 95 + 10 - 5.01 spent in 11 s
    tracker.add(BalanceSample(62.0, D("99.89")))
    tracker.note_expected_credit(D(10))
    tracker.add(BalanceSample(63.0, D("109.89")))
    f = tracker.forecast(63.0)
    assert f is not None
    assert f.rate < 0.2, f


# --- thinning (a fleet's thousand trackers) -------------------------------------------------
@given(st.lists(st.tuples(st.sampled_from([1.0, 2.0, 30.0, 61.0, 400.0]), balances), min_size=2,
                max_size=120))  # fmt: skip
def test_thinning_old_records_leaves_the_short_window_and_the_peak_exactly_as_they_were(
    steps: list[tuple[float, Decimal]],
) -> None:
    plain, thinned = SpendTracker(), SpendTracker(old_spacing=300.0)
    t = 0.0
    for dt, b in steps:
        t += dt
        plain.add(BalanceSample(t, b))
        thinned.add(BalanceSample(t, b))
    a, b_ = plain.forecast(t), thinned.forecast(t)
    assert a is not None
    assert b_ is not None
    assert (b_.t, b_.balance, b_.rate_short, b_.peak_rate) == (a.t, a.balance, a.rate_short,
                                                                a.peak_rate)  # fmt: skip
    assert b_.samples <= a.samples
    assert math.isfinite(b_.rate_long)
    assert b_.rate_long >= 0


def test_thinned_long_window_keeps_the_rate_with_a_third_of_the_records() -> None:
    """Three hours of a bursty account read every 2 s, recorded about once a minute."""
    rng = random.Random(7)
    plain, thinned = SpendTracker(), SpendTracker(old_spacing=300.0)
    balance, t, last_t = Decimal(10_000), 0.0, -1e9
    while t < 3 * 3600:
        t += 2.0
        burst = int(t) % 1800 < 120
        balance -= Decimal("0.05") * rng.randint(5 if burst else 0, 20 if burst else 2)
        if t - last_t >= 60.0:  # the fleet records about once a minute
            plain.add(BalanceSample(t, balance))
            thinned.add(BalanceSample(t, balance))
            last_t = t
    a, b = plain.forecast(t), thinned.forecast(t)
    assert a is not None
    assert b is not None
    assert b.samples <= a.samples / 2.5, (a.samples, b.samples)
    assert b.rate_long == pytest.approx(a.rate_long, rel=0.02)
    assert (b.rate_short, b.peak_rate) == (a.rate_short, a.peak_rate)
