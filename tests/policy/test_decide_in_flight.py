"""The decision with money on its way: confirmed credits, credits in doubt, learnt latency."""

from __future__ import annotations

import dataclasses
import math
from decimal import Decimal

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from tests.policy.test_decide import PARAMS, fc, state
from topup_guard.policy import Action, GuardState, decide, lead_time

D = Decimal
WAIT = dataclasses.replace(PARAMS, on_doubt="wait")
# PARAMS: floor 10 EUR, poll_min 5 s, latency 5 s, margin 30 s: a lead of 40 s while waiting.


# --- confirmed credit in flight -------------------------------------------------------------


@pytest.mark.parametrize(
    ("balance", "rate"), [("60", 5.0), ("15", 0.5), ("25", 0.5), ("200", 5.0), ("-30", 0.01)]
)
@pytest.mark.parametrize("on_its_way", [1, 2, 3, 10])
def test_confirmed_credit_in_flight_is_not_bought_again(
    balance: str, rate: float, on_its_way: int
) -> None:
    """Whatever else the policy wants, every top-up already on its way is one fewer bought."""
    amount = D(50)
    without = decide(fc(balance, rate), state(topups_allowed=100), PARAMS, 0.0)
    assert without.action is Action.TOP_UP
    credit = amount * on_its_way
    d = decide(fc(balance, rate), state(credit_in_flight=credit, topups_allowed=100), PARAMS, 0.0)
    # Counts are stepped (the floor's need at once, the headroom one at a time), so the
    # comparison is on what each decision wanted.
    assert d.count <= max(1, without.count)
    assert d.wanted <= max(0, without.wanted - on_its_way) or d.action is not Action.TOP_UP
    if d.action is Action.TOP_UP:
        assert f"{credit:.2f} EUR confirmed and on its way" in d.reason
    assert d.next_poll_in == PARAMS.poll_min  # look again soon: has it shown yet?


@given(
    balance=st.decimals(min_value="-500", max_value="500", places=2),
    rate=st.floats(min_value=0, max_value=20),
    peak=st.floats(min_value=0, max_value=40),
    on_its_way=st.integers(min_value=1, max_value=20),
    amount=st.sampled_from([D(5), D(10), D(50)]),
)
def test_no_forecast_buys_again_what_is_on_its_way(
    balance: Decimal, rate: float, peak: float, on_its_way: int, amount: Decimal
) -> None:
    f = fc(balance, rate, peak=max(rate, peak))
    without = decide(f, state(topup_amount=amount, topups_allowed=1000), PARAMS, 0.0)
    with_credit = decide(
        f,
        state(topup_amount=amount, topups_allowed=1000, credit_in_flight=amount * on_its_way),
        PARAMS,
        0.0,
    )
    assert with_credit.wanted <= max(0, without.wanted - on_its_way) or (
        with_credit.action is not Action.TOP_UP
    )
    assert with_credit.count <= max(1, without.count)


def test_a_confirmed_credit_that_shows_seconds_later_is_bought_once() -> None:
    """Issue 10: 6 EUR, 0.3 EUR/s, 50 EUR top-ups, the credit 3 s behind Vonage's "200", a poll
    a second: one charge, not four."""
    params = dataclasses.replace(PARAMS, poll_min=1.0, topup_latency=1.0, safety_margin=10.0)
    balance, rate, bought = D(6), 0.3, []
    lands: list[float] = []
    for tick in range(30):
        now = float(tick)
        balance -= D("0.3")
        balance += D(50) * sum(1 for t in lands if now - 1 < t <= now)
        on_its_way = D(50) * sum(1 for t in lands if t > now)
        d = decide(fc(balance, rate, t=now), state(credit_in_flight=on_its_way), params, now)
        if d.action is Action.TOP_UP:
            bought.append(now)
            lands += [now + 3.0] * d.count
    assert bought == [0.0]
    assert balance > params.min_balance


def test_credit_in_flight_pushes_exhaustion_out_of_the_horizon() -> None:
    params = dataclasses.replace(PARAMS, horizon=100.0)
    assert decide(fc("15", 0.5), state(), params, 0).exhaustion_within_horizon  # empty in 30 s
    d = decide(fc("15", 0.5), state(credit_in_flight=D(50)), params, 0)  # empty in 130 s
    assert not d.exhaustion_within_horizon
    assert d.action is Action.NOTHING


# --- credit in doubt --------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Doubt:
    name: str
    balance: str
    rate: float
    doubt: str
    ends_in: float
    action: Action
    despite: bool
    says: str
    peak: float | None = None
    on_doubt: str = "topup"
    changes: tuple[tuple[str, object], ...] = ()


DOUBTS = [
    Doubt(
        "doubt is counted while waiting for it is safe",
        # the floor in 37 s at 0.5 EUR/s; verification ends in 1 s, + 5 s latency + 30 s margin
        "28.5", 0.5, "50", 1.0, Action.NOTHING, False,
        "50.00 EUR in doubt counted until verification ends in 1.0 s",
    ),
    Doubt(
        "exhaustion beats doubt when the floor comes before verification can end",
        "15", 0.5, "50", 30.0, Action.TOP_UP, True,
        "exhaustion beats doubt, not waiting",
    ),
    Doubt(
        "the burst rate decides whether waiting is safe",
        "28.5", 0.5, "50", 1.0, Action.TOP_UP, True,
        "but the balance reaches the floor in 18 s",
        peak=1.0,
    ),
    Doubt(
        "a verification already over counts as ending now",
        "28.5", 0.5, "50", -5.0, Action.NOTHING, False,
        "until verification ends in now",
    ),
    Doubt(
        "on_doubt=wait counts doubt whatever the forecast says",
        "15", 0.5, "50", 30.0, Action.NOTHING, False,
        "(TOPUP_GUARD_ON_DOUBT=wait)",
        on_doubt="wait",
    ),
    Doubt(
        "exhaustion beating doubt is still bounded by the caps",
        "15", 0.5, "50", 30.0, Action.WARN, False,
        "the top-up caps are used up",
        changes=(("topups_allowed", 0),),
    ),
    Doubt(
        "exhaustion beating doubt is still bounded by the dry run",
        "15", 0.5, "50", 30.0, Action.WARN, False,
        "but dry run",
        changes=(("dry_run", True),),
    ),
    Doubt(
        "confirmed credit is counted before judging the doubt",
        # 15 + 50 confirmed reaches the floor in 110 s: waiting 30 s for the doubt is safe.
        "15", 0.5, "50", 30.0, Action.NOTHING, False,
        "50.00 EUR confirmed and on its way; 50.00 EUR in doubt counted",
        changes=(("credit_in_flight", D(50)),),
    ),
]  # fmt: skip


@pytest.mark.parametrize("case", DOUBTS, ids=lambda c: c.name)
def test_doubt(case: Doubt) -> None:
    params = dataclasses.replace(PARAMS, on_doubt=case.on_doubt)
    st_ = state(doubt_credit=D(case.doubt), doubt_ends_in=case.ends_in, **dict(case.changes))
    d = decide(fc(case.balance, case.rate, peak=case.peak), st_, params, 0.0)
    assert (d.action, d.despite_doubt) == (case.action, case.despite)
    assert case.says in d.reason
    assert d.next_poll_in == params.poll_min


def test_a_top_up_despite_doubt_buys_what_the_balance_alone_needs() -> None:
    d = decide(fc("15", 0.5), state(doubt_credit=D(50), doubt_ends_in=30.0), PARAMS, 0.0)
    assert (d.action, d.count, d.wanted) == (Action.TOP_UP, 1, 1)
    assert d.projected_balance == D(-5)  # the doubtful 50 EUR is not counted
    assert "topping up 1 × 50.00 EUR" in d.reason


def test_without_doubt_nothing_is_despite_doubt() -> None:
    d = decide(fc("15", 0.5), state(), PARAMS, 0.0)
    assert (d.action, d.despite_doubt) == (Action.TOP_UP, False)
    assert "doubt" not in d.reason


def test_exhaustion_beating_doubt_is_judged_with_the_learnt_latency() -> None:
    """35 EUR at 0.5 EUR/s: the floor in 50 s. Verification ends in 10 s and a credit has been
    taking 20 s to show: waiting for the doubt, then topping up, lands after 10 + 20 + 30 s of
    margin = 60 s > 50 s. Judged with the configured 5 s it looks safe (45 s < 50 s)."""
    d = decide(
        fc("35", 0.5), state(doubt_credit=D(50), doubt_ends_in=10.0, latency=20.0), PARAMS, 0.0
    )
    assert (d.action, d.despite_doubt) == (Action.TOP_UP, True)


doubt_states = st.builds(
    lambda amount, allowed, doubt, ends, confirmed, latency: state(
        topup_amount=amount,
        topups_allowed=allowed,
        doubt_credit=doubt,
        doubt_ends_in=ends,
        credit_in_flight=confirmed,
        latency=latency,
    ),
    st.sampled_from([None, D(2), D(10), D(50)]),
    st.integers(min_value=0, max_value=10),
    st.sampled_from([D(0), D(2), D(10), D(50), D(100)]),
    st.one_of(st.none(), st.floats(min_value=-10, max_value=120)),
    st.sampled_from([D(0), D(50)]),
    st.one_of(st.none(), st.floats(min_value=0, max_value=60)),
)


@given(
    balance=st.decimals(min_value="-100", max_value="200", places=2),
    rate=st.floats(min_value=0, max_value=10),
    s_=doubt_states,
    on_doubt=st.sampled_from(["topup", "wait"]),
)
@example(balance=D("28.5"), rate=0.5, s_=state(doubt_credit=D(0), doubt_ends_in=1.0),
         on_doubt="topup")  # fmt: skip
@example(balance=D("15"), rate=0.5, s_=state(doubt_credit=D(2), doubt_ends_in=30.0),
         on_doubt="wait")  # fmt: skip
def test_a_top_up_while_in_doubt_is_always_made_despite_the_doubt(
    balance: Decimal, rate: float, s_: GuardState, on_doubt: str
) -> None:
    """The ledger refuses a new attempt while one is UNKNOWN unless ``despite_doubt``: a TOP_UP
    decided in doubt without it cannot be carried out (the engine logs topup_not_started). And
    ``on_doubt="wait"`` means never buying while in doubt."""
    params = dataclasses.replace(PARAMS, on_doubt=on_doubt)
    d = decide(fc(balance, rate), s_, params, 0.0)
    if d.action is Action.TOP_UP and s_.doubt_ends_in is not None:
        assert on_doubt == "topup"
        assert d.despite_doubt


# --- learnt latency ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("latency", "lead"),
    [(None, 40.0), (1.0, 40.0), (5.0, 40.0), (20.0, 55.0), (120.0, 155.0)],
)
def test_a_learnt_latency_longer_than_the_configured_one_lengthens_the_lead(
    latency: float | None, lead: float
) -> None:
    assert lead_time(PARAMS, 5.0, latency) == lead


def topped_up_at(latency: float | None, rate: float) -> set[int]:
    """The balances (whole EUR, 0..600) at which a balance falling at ``rate`` is topped up."""
    return {
        b
        for b in range(601)
        if decide(fc(str(b), rate), state(latency=latency), PARAMS, 0.0).action is Action.TOP_UP
    }


@pytest.mark.parametrize("rate", [0.5, 1.0, 3.0])  # fast enough for the latency to matter
def test_a_learnt_latency_makes_the_guard_top_up_sooner(rate: float) -> None:
    calm, slow = topped_up_at(None, rate), topped_up_at(20.0, rate)
    assert calm < slow  # every balance topped up before still is, and some higher ones too
    assert topped_up_at(1.0, rate) == calm  # faster than configured: the configured one holds


@pytest.mark.parametrize("latency", [5.0, 20.0, 45.0])
def test_with_a_learnt_latency_the_credit_still_lands_with_the_margin_in_hand(
    latency: float,
) -> None:
    rate, balance, now = 0.1, D(100), 0.0
    for _ in range(500):
        d = decide(fc(balance, rate, t=now), state(latency=latency), PARAMS, now)
        if d.action is Action.TOP_UP:
            break
        now += d.next_poll_in
        balance -= D(str(rate * d.next_poll_in))
    else:
        pytest.fail("never topped up")
    landing = balance - D(str(rate * latency))
    assert landing >= PARAMS.min_balance + D(str(rate * PARAMS.safety_margin)) - D("0.01")


# --- caps, whatever the state -----------------------------------------------------------------


@given(
    balance=st.decimals(min_value="-1e6", max_value="1e6", places=4),
    rate=st.floats(min_value=0, max_value=1e9),
    peak=st.floats(min_value=0, max_value=1e9),
    confidence=st.floats(min_value=0, max_value=1),
    s_=doubt_states,
    now=st.floats(min_value=0, max_value=1e6),
    on_doubt=st.sampled_from(["topup", "wait"]),
)
def test_no_state_makes_the_decision_exceed_the_caps(
    balance: Decimal,
    rate: float,
    peak: float,
    confidence: float,
    s_: GuardState,
    now: float,
    on_doubt: str,
) -> None:
    params = dataclasses.replace(PARAMS, on_doubt=on_doubt)
    f = fc(balance, rate, peak=max(rate, peak), confidence=confidence)
    d = decide(f, s_, params, now)
    assert 0 <= d.count <= max(0, s_.topups_allowed)
    assert math.isfinite(d.next_poll_in)
    assert params.poll_min <= d.next_poll_in <= params.poll_interval
    if d.action is Action.TOP_UP:
        assert d.count >= 1
        assert d.count == 1 or s_.topup_amount is not None
        assert d.count == 1 or confidence >= 0.25
    else:
        assert d.count == 0
