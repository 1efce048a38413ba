"""Readings judged before they are believed: table-driven and synchronous."""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from topup_guard.model import BalanceSample
from topup_guard.policy.readings import (
    DEFAULT_MAX_BALANCE,
    MIN_HISTORY,
    Judged,
    Kind,
    ReadingJudge,
    median,
)

D = Decimal


def s(t: float, balance: str | Decimal) -> BalanceSample:
    return BalanceSample(t, D(balance))


def steady(
    gaps: int = 5, *, start: str = "100", per_gap: str = "1", every: float = 10.0
) -> ReadingJudge:
    """A judge that believed ``gaps`` + 1 readings spending ``per_gap`` EUR every ``every`` s
    (0.1 EUR/s by default), the last at ``t = gaps * every``."""
    judge = ReadingJudge()
    for i in range(gaps + 1):
        (verdict,) = judge.judge(s(i * every, D(start) - i * D(per_gap)))
        assert verdict.kind is Kind.BELIEVED
    return judge


def kinds(verdicts: list[Judged]) -> list[tuple[float, Kind]]:
    return [(v.sample.t, v.kind) for v in verdicts]


# After steady(): the last believed reading is 95 EUR at t = 50, spending 0.1 EUR/s; a drop beyond
# LUMP_FACTOR (4) x 0.1 EUR/s x 10 s = 4 EUR in a 10 s gap is held.


@dataclass(frozen=True)
class Case:
    name: str
    readings: tuple[tuple[float, str], ...]  # fed after steady(), in order
    verdicts: tuple[tuple[float, Kind], ...]  # every verdict returned, in order
    misreads: int = 0
    stale: int = 0


CASES = [
    Case("a normal drop is believed", ((60, "94"),), ((60, Kind.BELIEVED),)),
    Case("a drop just within the threshold is believed", ((60, "91"),), ((60, Kind.BELIEVED),)),
    Case("a drop beyond the threshold is held", ((60, "55"),), ((60, Kind.HELD),)),
    Case(
        "a held drop the next gap does not continue is a lump",
        ((60, "55"), (70, "54")),
        ((60, Kind.HELD), (60, Kind.LUMP), (70, Kind.BELIEVED)),
    ),
    Case(
        "a held drop the next reading reverts was a misread",
        ((60, "55"), (70, "94")),
        ((60, Kind.HELD), (60, Kind.MISREAD), (70, Kind.BELIEVED)),
        misreads=1,
    ),
    Case(
        "a glitch up and back is a misread",
        ((60, "100000"), (70, "94")),
        ((60, Kind.HELD), (60, Kind.MISREAD), (70, Kind.BELIEVED)),
        misreads=1,
    ),
    Case(
        "a rise no credit explains is held, and believed when the next reading stays",
        ((60, "145"), (70, "144")),
        ((60, Kind.HELD), (60, Kind.BELIEVED), (70, Kind.BELIEVED)),
    ),
    Case("a rise below a cent is rounding, believed", ((60, "95.005"),), ((60, Kind.BELIEVED),)),
    Case("a small rise no credit explains is held", ((60, "95.9"),), ((60, Kind.HELD),)),
    Case(
        "a reading older than the latest believed one is stale",
        ((45, "20"),),
        ((45, Kind.STALE),),
        stale=1,
    ),
    Case(
        "a reading at the same time as the latest believed one is judged, not stale",
        ((50, "95"),),
        ((50, Kind.BELIEVED),),
    ),
    Case(
        "a reading older than the held one is stale",
        ((60, "55"), (55, "55")),
        ((60, Kind.HELD), (55, Kind.STALE)),
        stale=1,
    ),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_readings_are_judged(case: Case) -> None:
    judge = steady()
    got: list[tuple[float, Kind]] = []
    for t, value in case.readings:
        got += kinds(judge.judge(s(t, value)))
    assert got == list(case.verdicts)
    assert (judge.misreads, judge.stale) == (case.misreads, case.stale)


def test_a_burst_is_believed_as_spend_not_a_lump() -> None:
    judge = steady(start="1000")  # 995 EUR at t = 50
    assert kinds(judge.judge(s(60, "955"))) == [(60, Kind.HELD)]
    verdicts = judge.judge(s(70, "915"))  # 4 EUR/s again: well beyond 3 x the recent 0.1 EUR/s
    assert verdicts[0].sample.t == 60
    assert verdicts[0].kind is Kind.BELIEVED
    assert judge.lumps == []


def test_a_lump_is_recorded_with_its_size() -> None:
    judge = steady()
    judge.judge(s(60, "55"))
    judge.judge(s(70, "54"))
    assert judge.lumps == [(60, D(40))]


def test_a_lump_stays_out_of_the_robust_rate() -> None:
    judge = steady()
    before = judge.baseline()
    judge.judge(s(60, "55"))
    judge.judge(s(70, "54"))
    assert before is not None
    after = judge.baseline()
    assert after is not None
    assert after[0] == pytest.approx(before[0])  # median still 0.1 EUR/s


def test_the_held_reasons_say_what_was_seen() -> None:
    judge = steady()
    (held,) = judge.judge(s(60, "55"))
    assert "a drop of 40.00 EUR" in held.why
    lump, _ = judge.judge(s(70, "54"))
    assert lump.why == held.why
    judge = steady()
    (held,) = judge.judge(s(60, "145"))
    assert "a rise of 50.00 EUR that no top-up in flight explains" in held.why
    judge = steady()
    judge.judge(s(60, "55"))
    misread, _ = judge.judge(s(70, "94"))
    assert "the next reading reverted it" in misread.why


def test_an_explained_rise_is_believed_at_once() -> None:
    judge = steady()
    assert kinds(judge.judge(s(60, "145"), rise_explained=True)) == [(60, Kind.BELIEVED)]
    assert judge.last == s(60, "145")


def test_the_held_reading_is_not_believed_yet() -> None:
    judge = steady()
    judge.judge(s(60, "55"))
    assert judge.last == s(50, "95")
    assert judge.held == s(60, "55")


def test_a_recent_burst_raises_the_drop_threshold() -> None:
    """The engine passes the tracker's burst rate: a drop at that pace is not an outlier."""
    judge = steady()
    assert kinds(judge.judge(s(60, "55"), rate_hint=4.0)) == [(60, Kind.BELIEVED)]


@pytest.mark.parametrize("gaps", range(MIN_HISTORY))
@pytest.mark.parametrize(
    ("value", "kind"),
    [
        ("5000", Kind.HELD),  # a rise nothing explains: the next reading tells what it was
        ("60", Kind.BELIEVED),  # a drop of less than half the balance (START_SHARE)
        ("40", Kind.HELD),  # half the balance or more in one gap: confirmed first
        ("-500", Kind.HELD),
    ],
)
def test_with_few_gaps_of_history_a_drop_of_half_the_balance_is_held(
    gaps: int, value: str, kind: Kind
) -> None:
    judge = steady(gaps)  # 100 - gaps EUR
    (verdict,) = judge.judge(s(1000, value))
    assert verdict.kind is kind
    assert (judge.held is not None) is (kind is Kind.HELD)


@pytest.mark.parametrize("gaps", range(MIN_HISTORY))
def test_with_few_gaps_of_history_an_explained_rise_is_believed(gaps: int) -> None:
    judge = steady(gaps)
    (verdict,) = judge.judge(s(1000, "5000"), rise_explained=True)
    assert verdict.kind is Kind.BELIEVED


def test_the_first_reading_is_believed() -> None:
    judge = ReadingJudge()
    assert kinds(judge.judge(s(0, "-3"))) == [(0, Kind.BELIEVED)]


@pytest.mark.parametrize(
    "sample",
    [
        s(60, "NaN"),
        s(60, "sNaN"),
        s(60, "Infinity"),
        s(60, "-Infinity"),
        s(60, DEFAULT_MAX_BALANCE + 1),
        s(60, -DEFAULT_MAX_BALANCE - 1),
        s(60, "1e16"),
        BalanceSample(math.inf, D(90)),
        BalanceSample(math.nan, D(90)),
    ],
    ids=str,
)
def test_an_implausible_reading_is_a_misread_and_counted(sample: BalanceSample) -> None:
    judge = steady()
    (verdict,) = judge.judge(sample)
    assert verdict.kind is Kind.MISREAD
    assert verdict.why == "implausible value"
    assert judge.misreads == 1
    assert judge.last == s(50, "95")


def test_the_bound_on_a_plausible_balance_is_configurable() -> None:
    judge = ReadingJudge(max_balance=D(1000))
    assert judge.judge(s(0, "1000"))[0].kind is Kind.BELIEVED
    assert judge.judge(s(1, "1000.01"))[0].kind is Kind.MISREAD


def test_a_misread_while_a_reading_is_held_keeps_it_held() -> None:
    judge = steady()
    judge.judge(s(60, "55"))
    assert judge.judge(s(65, "NaN"))[0].kind is Kind.MISREAD
    assert kinds(judge.judge(s(70, "54"))) == [(60, Kind.LUMP), (70, Kind.BELIEVED)]


def test_a_stale_reading_while_a_reading_is_held_does_not_discard_the_held_one() -> None:
    """A cached answer arriving between a held drop and its confirmation must not make the
    guard forget the drop: the next reading still settles it (here: a lump)."""
    judge = steady()
    judge.judge(s(60, "55"))
    assert kinds(judge.judge(s(55, "95"))) == [(55, Kind.STALE)]
    assert kinds(judge.judge(s(70, "54"))) == [(60, Kind.LUMP), (70, Kind.BELIEVED)]


def test_the_reading_that_confirms_a_held_one_is_judged_itself() -> None:
    judge = steady()
    judge.judge(s(60, "55"))
    # 56 stays near the held 55 (a lump), but is itself a 1 EUR rise no credit explains.
    verdicts = judge.judge(s(70, "56"))
    assert kinds(verdicts) == [(60, Kind.LUMP), (70, Kind.HELD)]


readings = st.lists(
    st.tuples(
        st.floats(allow_nan=True, allow_infinity=True),
        st.one_of(
            st.decimals(allow_nan=True, allow_infinity=True),
            st.decimals(min_value="-1e20", max_value="1e20", places=4),
        ),
        st.booleans(),
    ),
    max_size=60,
)


@given(readings)
def test_any_sequence_is_judged_without_raising_and_believed_times_never_go_back(
    seq: list[tuple[float, Decimal, bool]],
) -> None:
    judge = ReadingJudge()
    believed: list[BalanceSample] = []
    fed = 0
    for t, value, explained in seq:
        fed += 1
        for v in judge.judge(BalanceSample(t, value), rise_explained=explained):
            if v.kind in (Kind.BELIEVED, Kind.LUMP):
                believed.append(v.sample)
    assert [b.t for b in believed] == sorted(b.t for b in believed)
    for b in believed:
        assert b.balance.is_finite()
        assert abs(b.balance) <= judge.max_balance
        assert math.isfinite(b.t)
    assert judge.misreads + judge.stale <= fed
    assert judge.held is None or judge.held.balance.is_finite()


@given(st.lists(st.floats(min_value=-1e6, max_value=1e6), min_size=1, max_size=40))
def test_the_baselines_median_is_the_statistics_modules(values: list[float]) -> None:
    assert median(values) == statistics.median(values)


def test_the_baseline_is_recomputed_when_a_believed_gap_adds_a_rate() -> None:
    judge = ReadingJudge()
    for i in range(6):
        judge.judge(BalanceSample(t=10.0 * i, balance=Decimal(100 - i)))
    first = judge.baseline()
    assert first is not None
    assert first == (0.1, 0.0)
    for i in range(1, 6):  # five gaps at twice the pace: the median moves between them
        judge.judge(BalanceSample(t=50.0 + 10 * i, balance=Decimal(95 - 2 * i)))
    assert judge.baseline() == (0.15000000000000002, 0.07413)


def test_with_history_a_drop_of_half_the_balance_is_held_even_within_the_spread() -> None:
    """A wide spread of recent gaps (or a long one) can put the robust threshold beyond the
    balance itself: a reading near empty then buys the floor's whole need at once. Half the
    balance or more in one gap is confirmed first, history or not."""
    judge = steady()  # 95 EUR at t = 50, 0.1 EUR/s
    (verdict,) = judge.judge(s(80, "45"), rate_hint=2.0)  # 50 EUR in 30 s: within 4 x 2 EUR/s
    assert verdict.kind is Kind.HELD
    assert "half the balance" in verdict.why
    (verdict,) = steady().judge(s(80, "50"), rate_hint=2.0)  # less than half: a burst
    assert verdict.kind is Kind.BELIEVED
