"""Credits in flight and the evidence that settles them: table-driven and synchronous."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from decimal import Decimal

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from topup_guard.model import BalanceSample
from topup_guard.policy.credits import (
    LATE_WINDOWS,
    PLAUSIBLE_MIN_TOPUP,
    CreditWatch,
    InFlight,
    LatencyModel,
)

D = Decimal


def entry(
    attempt_id: int,
    amount: str | None = "10",
    *,
    sent_at: float = 0.0,
    confirmed: bool = True,
    deadline: float = 60.0,
    late: bool = False,
    mine: bool = True,
) -> InFlight:
    return InFlight(
        attempt_id=attempt_id,
        amount=None if amount is None else D(amount),
        sent_at=sent_at,
        confirmed=confirmed,
        deadline=deadline,
        late=late,
        mine=mine,
    )


def watch_of(*entries: InFlight) -> CreditWatch:
    w = CreditWatch()
    for e in entries:
        w.add(e)
    return w


def s(t: float, balance: str) -> BalanceSample:
    return BalanceSample(t, D(balance))


# --- on_step ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Step:
    name: str
    entries: tuple[InFlight, ...]
    prev: BalanceSample
    cur: BalanceSample
    rate: float
    matched: tuple[int, ...]  # attempt ids settled, in the order settled
    credited: tuple[str, ...]
    unexplained: str
    left: tuple[int, ...] = field(default=())  # attempt ids still in the set afterwards


STEPS = [
    Step(
        "a drop settles nothing",
        (entry(1),),
        s(10, "50"),
        s(20, "40"),
        0.5,
        (),
        (),
        "0",
        (1,),
    ),
    Step(
        "an unchanged balance settles nothing",
        (entry(1),),
        s(10, "50"),
        s(20, "50"),
        0.0,
        (),
        (),
        "0",
        (1,),
    ),
    Step(
        "a rise of exactly the amount settles it",
        (entry(1),),
        s(10, "5"),
        s(11, "15"),
        0.0,
        (1,),
        ("10",),
        "0",
    ),
    Step(
        "a confirmed entry is settled before an older ambiguous one",
        (entry(1, sent_at=0, confirmed=False), entry(2, sent_at=5, confirmed=True)),
        s(10, "5"),
        s(11, "15"),
        0.0,
        (2,),
        ("10",),
        "0",
        (1,),
    ),
    Step(
        "among confirmed entries the oldest is settled first",
        (entry(2, sent_at=5), entry(1, sent_at=1)),
        s(10, "5"),
        s(11, "15"),
        0.0,
        (1,),
        ("10",),
        "0",
        (2,),
    ),
    Step(
        "the amount may exceed the rise by the spend the credit hid",
        # 0.5 EUR/s over 10 s, at twice the rate: up to 10 EUR hidden; 10 EUR fits a rise of 5.
        (entry(1),),
        s(10, "20"),
        s(20, "25"),
        0.5,
        (1,),
        ("10",),
        "0",
    ),
    Step(
        "a confirmed credit is settled by a rise of half of it (a burst hid the rest)",
        (entry(1, confirmed=True),),
        s(10, "20"),
        s(11, "25"),
        0.0,
        (1,),
        ("10",),
        "0",
    ),
    Step(
        "an ambiguous credit must fit in rise plus hidden spend",
        (entry(1, confirmed=False),),
        s(10, "20"),
        s(11, "25"),
        0.0,
        (),
        (),
        "5",
        (1,),
    ),
    Step(
        "an amount larger than rise plus hidden spend is not settled",
        (entry(1, "20"),),
        s(10, "20"),
        s(20, "25"),
        0.5,
        (),
        (),
        "5",
        (1,),
    ),
    Step(
        "a rise beyond the amount leaves the rest unexplained",
        (entry(1),),
        s(10, "5"),
        s(11, "20"),
        0.0,
        (1,),
        ("10",),
        "5",
    ),
    Step(
        "a rest within the tolerance is not an unexplained credit",
        (entry(1),),
        s(10, "5"),
        s(11, "15.04"),
        0.0,
        (1,),
        ("10",),
        "0",
    ),
    Step(
        "a rise with nothing in flight is all unexplained",
        (),
        s(10, "5"),
        s(11, "55"),
        0.0,
        (),
        (),
        "50",
    ),
    Step(
        "two entries are settled by one rise that holds both",
        (entry(1, sent_at=1), entry(2, sent_at=2)),
        s(10, "5"),
        s(11, "25"),
        0.0,
        (1, 2),
        ("10", "10"),
        "0",
    ),
    Step(
        "an entry sent after the reading is not settled by it",
        (entry(1, sent_at=12),),
        s(10, "5"),
        s(11, "15"),
        0.0,
        (),
        (),
        "10",
        (1,),
    ),
    Step(
        "an unknown amount is settled by a plausible step, snapped to a whole euro",
        (entry(1, None),),
        s(10, "5"),
        s(11, "54.99"),
        0.0,
        (1,),
        ("50",),
        "0",
    ),
    Step(
        "an unknown amount is not settled by a step below the plausible minimum",
        (entry(1, None),),
        s(10, "5"),
        s(11, "8"),
        0.0,
        (),
        (),
        "3",
        (1,),
    ),
    Step(
        "hidden spend can make a small rise a plausible unknown credit",
        # rise 4.5, up to 1 EUR hidden (0.05 EUR/s x 10 s x 2): 5 EUR fits.
        (entry(1, None),),
        s(10, "20"),
        s(20, "24.5"),
        0.05,
        (1,),
        ("5",),
        "0",
    ),
    Step(
        "an unknown amount does not share a step with a known one",
        (entry(1, "10", sent_at=1), entry(2, None, sent_at=2)),
        s(10, "5"),
        s(11, "65"),
        0.0,
        (1,),
        ("10",),
        "50",
        (2,),
    ),
    Step(
        "a late entry is still settled, after the ones in their window",
        (entry(1, sent_at=0, late=True), entry(2, sent_at=5, confirmed=False)),
        s(10, "5"),
        s(11, "15"),
        0.0,
        (2,),
        ("10",),
        "0",
        (1,),
    ),
    Step(
        "a late entry alone is settled by a later step",
        (entry(1, sent_at=0, late=True),),
        s(100, "5"),
        s(101, "15"),
        0.0,
        (1,),
        ("10",),
        "0",
    ),
    Step(
        "another process's entry is settled too (the watch only counts it)",
        (entry(1, mine=False),),
        s(10, "5"),
        s(11, "15"),
        0.0,
        (1,),
        ("10",),
        "0",
    ),
]


@pytest.mark.parametrize("case", STEPS, ids=[c.name for c in STEPS])
def test_a_step_settles_what_it_proves(case: Step) -> None:
    w = watch_of(*case.entries)
    verdict = w.on_step(case.prev, case.cur, case.rate)
    assert tuple(m.entry.attempt_id for m in verdict.matches) == case.matched
    assert tuple(m.credited for m in verdict.matches) == tuple(D(c) for c in case.credited)
    assert verdict.unexplained == D(case.unexplained)
    assert verdict.rise == max(D(0), case.cur.balance - case.prev.balance)
    assert sorted(e.attempt_id for e in w.entries) == sorted(case.left)


@pytest.mark.parametrize(
    ("prev", "cur", "rate", "clean"),
    [
        (s(10, "5"), s(11, "15"), 0.0, True),  # one credit, a short gap, above zero
        (s(10, "5"), s(11, "15"), 0.1, True),  # 0.2 EUR hidden is within 5 % of the rise
        (s(10, "5"), s(20, "15"), 1.0, False),  # up to 20 EUR hidden: the amount is not known
        (s(10, "0"), s(11, "10"), 0.0, False),  # at 0 demand was refused: spend is unknown
        (s(10, "-2"), s(11, "8"), 0.0, False),  # below 0 (postpaid) proves no more than 0
    ],
)
def test_only_a_short_step_above_zero_is_clean(
    prev: BalanceSample, cur: BalanceSample, rate: float, clean: bool
) -> None:
    verdict = watch_of(entry(1)).on_step(prev, cur, rate)
    assert len(verdict.matches) == 1
    assert verdict.matches[0].clean is clean


def test_a_step_from_zero_says_so_in_the_evidence() -> None:
    (match,) = watch_of(entry(1)).on_step(s(10, "0"), s(11, "10"), 0.0).matches
    assert "at 0" in match.evidence
    assert "0.00 -> 10.00 EUR" in match.evidence


def test_two_credits_in_one_gap_are_not_clean() -> None:
    verdict = watch_of(entry(1, sent_at=1), entry(2, sent_at=2)).on_step(
        s(10, "5"), s(11, "25"), 0.0
    )
    assert [m.clean for m in verdict.matches] == [False, False]


def test_a_match_reports_its_latency_and_the_readings() -> None:
    (match,) = watch_of(entry(1, sent_at=4.0)).on_step(s(10, "5"), s(12, "15"), 0.0).matches
    assert match.latency == pytest.approx(8.0)  # an upper bound: the reading that showed it
    assert "2.0 s apart" in match.evidence
    assert "8.0 s after the answer" in match.evidence


def test_a_late_match_says_it_was_late() -> None:
    (match,) = watch_of(entry(1, late=True)).on_step(s(100, "5"), s(101, "15"), 0.0).matches
    assert "late, " in match.evidence


def test_a_match_with_hidden_spend_gives_the_credit_range() -> None:
    (match,) = watch_of(entry(1)).on_step(s(10, "20"), s(20, "25"), 0.5).matches
    assert "a credit of 5.00..15.00 EUR" in match.evidence


def test_a_settled_entry_leaves_the_set_and_is_not_settled_twice() -> None:
    w = watch_of(entry(1))
    assert len(w.on_step(s(10, "5"), s(11, "15"), 0.0).matches) == 1
    assert 1 not in w
    second = w.on_step(s(11, "15"), s(12, "25"), 0.0)
    assert second.matches == ()
    assert second.unexplained == D(10)


@pytest.mark.parametrize("rate", [math.nan, math.inf, -1.0, 1e300])
def test_a_wild_rate_neither_raises_nor_hides_unbounded_spend(rate: float) -> None:
    verdict = watch_of(entry(1, "1000000000000")).on_step(s(10, "5"), s(11, "6"), rate)
    assert verdict.rise == D(1)
    assert verdict.matches == ()  # hidden spend is bounded (1e9 EUR), never inf or NaN
    assert verdict.unexplained == D(1)


# --- explains -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("entries", "prev", "cur", "rate", "explained"),
    [
        ((entry(1),), s(10, "5"), s(11, "15"), 0.0, True),
        ((entry(1),), s(10, "5"), s(11, "4"), 0.0, False),  # a drop is not a credit
        ((entry(1, "50"),), s(10, "5"), s(11, "15"), 0.0, False),  # too small for 50 EUR
        ((entry(1, "20"),), s(10, "20"), s(20, "25"), 0.5, False),
        ((entry(1),), s(10, "20"), s(20, "25"), 0.5, True),  # hidden spend makes room
        ((entry(1, None),), s(10, "5"), s(11, "55"), 0.0, True),
        ((entry(1, None),), s(10, "5"), s(11, "8"), 0.0, False),
        ((entry(1, sent_at=12),), s(10, "5"), s(11, "15"), 0.0, False),  # sent after it
        ((entry(1, late=True),), s(10, "5"), s(11, "15"), 0.0, True),  # late: still matchable
        ((), s(10, "5"), s(11, "15"), 0.0, False),
    ],
)
def test_explains_says_whether_an_entry_could_account_for_a_rise(
    entries: tuple[InFlight, ...],
    prev: BalanceSample,
    cur: BalanceSample,
    rate: float,
    explained: bool,
) -> None:
    w = watch_of(*entries)
    assert w.explains(prev, cur, rate) is explained
    assert len(w.entries) == len(entries)  # explains changes nothing


amounts = st.one_of(st.none(), st.decimals(min_value="0.01", max_value="200", places=2))


@given(
    amount=amounts,
    before=st.decimals(min_value="-50", max_value="500", places=2),
    rise=st.decimals(min_value="0.01", max_value="300", places=2),
    gap=st.floats(min_value=0, max_value=600),
    rate=st.floats(min_value=0, max_value=5),
)
# An unknown amount: explains() allows the tolerance on top of the plausible minimum, on_step not.
@example(amount=None, before=D(10), rise=D("4.96"), gap=0.0, rate=0.0)
# A confirmed credit: on_step takes a rise of half of it (CONFIRMED_SHARE), explains() not.
@example(amount=D(10), before=D(20), rise=D(5), gap=1.0, rate=0.0)
def test_a_rise_explains_accepts_is_one_on_step_settles(
    amount: Decimal | None, before: Decimal, rise: Decimal, gap: float, rate: float
) -> None:
    """The judge believes a rise at once when ``explains`` says so; the step must then settle
    an entry, or the rise is believed unheld and yet recorded as unexplained."""
    prev, cur = BalanceSample(0.0, before), BalanceSample(gap, before + rise)
    e = InFlight(1, amount, sent_at=0.0, confirmed=True, deadline=60.0)
    explained = watch_of(e).explains(prev, cur, rate)
    settled = bool(watch_of(e).on_step(prev, cur, rate).matches)
    # Explained means believed at once, so it must be settled; a rise the entries cannot all
    # account for (far more than is on its way) is held first, though a step may still settle it.
    assert settled or not explained


# --- expire -------------------------------------------------------------------------------


def test_an_entry_leaves_the_in_flight_set_at_its_deadline_but_stays_matchable() -> None:
    w = watch_of(entry(1, sent_at=0, deadline=10, confirmed=False))
    assert w.expire(9.99) == []
    assert [e.attempt_id for e in w.in_flight()] == [1]
    ended = w.expire(10.0)
    assert [(e.attempt_id, e.late) for e in ended] == [(1, True)]
    assert w.in_flight() == ()
    assert 1 in w
    assert w.expire(11.0) == []  # reported once
    (match,) = w.on_step(s(50, "5"), s(51, "15"), 0.0).matches
    assert match.entry.attempt_id == 1


def test_a_late_entry_is_forgotten_after_late_windows_more() -> None:
    w = watch_of(entry(1, sent_at=0, deadline=10))
    w.expire(10.0)
    forget_after = 10 + LATE_WINDOWS * 10
    w.expire(forget_after)
    assert 1 in w
    w.expire(forget_after + 0.01)
    assert 1 not in w
    assert w.on_step(s(200, "5"), s(201, "15"), 0.0).unexplained == D(10)


def test_a_window_shorter_than_a_second_still_stays_matchable_a_while() -> None:
    w = watch_of(entry(1, sent_at=0, deadline=0))
    w.expire(0.0)
    w.expire(LATE_WINDOWS * 1.0)  # the window counts as at least 1 s
    assert 1 in w


def test_a_late_confirmed_credit_is_still_counted_never_bought_again_on_a_timer() -> None:
    w = watch_of(entry(1, sent_at=0, deadline=10, confirmed=True))
    w.expire(10.0)
    assert [(e.attempt_id, e.late) for e in w.in_flight()] == [(1, True)]
    assert w.confirmed_credit() == D(10)


def test_confirmed_credit_counts_confirmed_entries_late_or_not() -> None:
    w = watch_of(
        entry(1, "10", confirmed=True, deadline=100),
        entry(2, "20", confirmed=False, deadline=100),
        entry(3, "40", confirmed=True, deadline=5),
        entry(4, None, confirmed=True, deadline=100),
        entry(5, None, confirmed=False, deadline=100),
    )
    # An unknown amount counts as the least a top-up can be: never bought the same again.
    assert w.confirmed_credit() == D(50) + PLAUSIBLE_MIN_TOPUP
    assert w.doubt_credit() == D(20) + PLAUSIBLE_MIN_TOPUP
    w.expire(5.0)
    assert w.confirmed_credit() == D(50) + PLAUSIBLE_MIN_TOPUP  # #3 late, still counted
    assert [e.attempt_id for e in w.doubtful()] == [2, 5]
    w.expire(100.0)
    assert w.doubt_credit() == D(0)  # doubt ends with its window
    w.expire(2000.0)  # forgotten LATE_WINDOWS windows later
    assert (w.confirmed_credit(), w.doubt_credit()) == (D(0), D(0))


def test_adding_an_entry_again_replaces_it() -> None:
    w = watch_of(entry(1, "10"), entry(1, "20"))
    assert [(e.attempt_id, e.amount) for e in w.entries] == [(1, D(20))]
    w.discard(1)
    assert w.entries == ()


# --- the latency model --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("floor", "ceiling", "poll_min", "seen", "window"),
    [
        (5.0, 60.0, 1.0, [], 15.0),  # nothing seen: three configured latencies
        (5.0, 60.0, 1.0, [2.0], 15.0),  # faster than configured: the configured one holds
        (5.0, 60.0, 1.0, [10.0], 30.0),  # three times the observed latency
        (5.0, 60.0, 1.0, [4.0, 12.0, 6.0], 36.0),  # the slowest recent one
        (5.0, 60.0, 1.0, [30.0], 60.0),  # never beyond the settle window
        (5.0, 60.0, 20.0, [], 40.0),  # at least two fast polls
        (5.0, 30.0, 20.0, [], 30.0),  # ... but still not beyond the settle window
        (0.0, 60.0, 0.0, [], 0.0),
        (100.0, 60.0, 1.0, [], 60.0),  # a floor above the ceiling is the ceiling
        (5.0, -1.0, 1.0, [], 0.0),  # a negative ceiling is 0
    ],
)
def test_the_verification_window_is_three_latencies_within_bounds(
    floor: float, ceiling: float, poll_min: float, seen: list[float], window: float
) -> None:
    model = LatencyModel(floor, ceiling, poll_min)
    for latency in seen:
        model.observe(latency)
    assert model.window() == pytest.approx(window)


def test_an_unusable_latency_is_not_learnt() -> None:
    model = LatencyModel(5.0, 60.0, 1.0)
    for bad in (math.nan, math.inf, -1.0):
        model.observe(bad)
    assert model.observed is None
    assert model.expected == 5.0


def test_a_slow_credit_long_ago_is_forgotten() -> None:
    model = LatencyModel(1.0, 60.0, 1.0)
    model.observe(15.0)
    assert model.observed == 15.0
    for _ in range(20):
        model.observe(2.0)
    assert model.observed == 2.0
    assert model.window() == pytest.approx(6.0)


@given(
    floor=st.floats(min_value=-100, max_value=1e6, allow_nan=False),
    ceiling=st.floats(min_value=-100, max_value=1e6, allow_nan=False),
    poll_min=st.floats(min_value=0, max_value=1e4, allow_nan=False),
    seen=st.lists(st.floats(allow_nan=True, allow_infinity=True), max_size=30),
)
def test_the_window_is_always_between_the_latency_floor_and_the_settle_window(
    floor: float, ceiling: float, poll_min: float, seen: list[float]
) -> None:
    model = LatencyModel(floor, ceiling, poll_min)
    for latency in seen:
        model.observe(latency)
    window = model.window()
    assert math.isfinite(window)
    assert min(max(0.0, floor), max(ceiling, 0.0)) <= window <= max(ceiling, 0.0)


# --- glitches: a rise is at most the credits behind it ------------------------------------


def test_a_rise_beyond_every_credit_on_its_way_is_not_explained_by_a_high_rate() -> None:
    """A glitched low reading believed at a burst's pace makes the rate high: the rise back
    from it (10 EUR on its way, the balance up 43) must still be judged, not explained away by
    the spend that rate could have hidden (spend only hides credit)."""
    w = watch_of(entry(1, "10", sent_at=7.0))
    assert not w.explains(s(7.0, "56.73"), s(37.0, "100"), 1.27)
    assert w.explains(s(7.0, "56.73"), s(37.0, "66.73"), 1.27)


def test_a_rise_of_one_credit_does_not_settle_a_second_one_it_has_no_room_for() -> None:
    """Two top-ups of 10 on their way, one rise of 10 in an 11-s gap: the spend bound alone
    (2 x 0.57 EUR/s x 11 s) would fit both, but only one has shown; the other stays on its way
    instead of its own rise later settling the next top-up."""
    w = watch_of(entry(1, "10", sent_at=17.0), entry(2, "10", sent_at=27.0))
    verdict = w.on_step(s(17.0, "60.24"), s(28.0, "70.24"), 0.574)
    assert [m.entry.attempt_id for m in verdict.matches] == [1]
    assert 2 in w
