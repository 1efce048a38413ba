"""The top-up decision: table-driven and synchronous, on hand-made forecasts."""

from __future__ import annotations

import dataclasses
import math
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from topup_guard.config import Settings
from topup_guard.policy import (
    Action,
    Forecast,
    GuardState,
    PolicyParams,
    decide,
    lead_time,
    next_poll,
    time_to_level,
)

PARAMS = PolicyParams(
    min_balance=Decimal(10),
    horizon=600.0,
    poll_min=5.0,
    poll_interval=60.0,
    topup_latency=5.0,
    safety_margin=30.0,
    min_headroom=Decimal(0),  # rate-based headroom only; the one-top-up reserve has its own tests
)
READY = GuardState(
    auto_reload=True,
    topup_amount=Decimal(50),
    topups_allowed=4,
    breaker_open=False,
    in_flight=False,
    may_spend=True,
    dry_run=False,
)


def fc(
    balance: str | Decimal,
    rate: float,
    *,
    peak: float | None = None,
    t: float = 0.0,
    confidence: float = 1.0,
) -> Forecast:
    b = Decimal(balance)
    return Forecast(
        t=t,
        balance=b,
        rate_short=rate,
        rate_long=rate,
        rate=rate,
        peak_rate=rate if peak is None else peak,
        time_to_exhaustion=time_to_level(b, Decimal(0), rate),
        confidence=confidence,
        samples=100,
        spend_total=Decimal(100) if rate > 0 else Decimal(0),
        credits_total=Decimal(0),
    )


def state(**changes: object) -> GuardState:
    return dataclasses.replace(READY, **changes)  # type: ignore[arg-type]


HOLD = PARAMS.poll_interval + PARAMS.topup_latency + PARAMS.safety_margin  # 95 s unseen


def level(burst: float) -> Decimal:
    """The balance that lets the guard sleep a whole poll interval (min_headroom 0 here)."""
    return PARAMS.min_balance + Decimal(str(burst * HOLD))


def test_tops_up_when_the_next_full_poll_interval_could_not_be_slept() -> None:
    """Healthy polls are a whole POLL_INTERVAL apart; the top-up comes at the first poll that
    finds the balance unable to cover the floor plus the burst rate over the next interval."""
    rate, balance, now = 0.1, Decimal(100), 0.0
    for _ in range(200):
        d = decide(fc(balance, rate, t=now), READY, PARAMS, now)
        if d.action is Action.TOP_UP:
            break
        assert d.action is Action.NOTHING
        assert d.next_poll_in == PARAMS.poll_interval  # no polling panic on the approach
        now += d.next_poll_in
        balance -= Decimal(str(rate * d.next_poll_in))
    else:
        pytest.fail("never topped up")
    assert d.count == 1
    assert level(rate) - Decimal(str(rate * PARAMS.poll_interval)) <= balance < level(rate)
    # The credit lands with the floor far off: no poll had to be early to see it coming.
    landing = balance - Decimal(str(rate * PARAMS.topup_latency))
    assert landing >= PARAMS.min_balance + Decimal(str(rate * PARAMS.safety_margin))


def test_does_not_top_up_when_healthy() -> None:
    d = decide(fc("500", 0.01), READY, PARAMS, 0.0)
    assert d.action is Action.NOTHING
    assert (d.count, d.wanted, d.blocked_by) == (0, 0, None)
    assert d.next_poll_in == PARAMS.poll_interval
    assert not d.exhaustion_within_horizon


@pytest.mark.parametrize(
    ("balance", "rate", "amount", "wanted"),
    [
        ("25", 0.5, "50", 1),  # level 57.5: one top-up restores a full poll interval of cover
        ("60", 5.0, "50", 9),  # burst: level 485 EUR, 425 short of it
        ("60", 5.0, "20", 22),
        ("60", 5.0, None, 1),  # amount unknown: one at a time
    ],
)
def test_count_restores_the_headroom_for_a_full_poll_interval(
    balance: str, rate: float, amount: str | None, wanted: int
) -> None:
    topup = None if amount is None else Decimal(amount)
    d = decide(fc(balance, rate), state(topup_amount=topup, topups_allowed=30), PARAMS, 0.0)
    assert d.action is Action.TOP_UP
    assert d.wanted == wanted
    # Bought now: what the floor needs, plus one for the headroom; the rest after the next
    # reading has confirmed the rate (one fast gap must not buy a dozen).
    projected = Decimal(balance) - Decimal(str(rate * 40))
    floor_need = 0 if topup is None else max(0, math.ceil((10 - projected) / topup))
    assert d.count == min(wanted, max(floor_need, 1) + 1)


def test_tops_up_more_than_once_on_a_burst_exceeding_one_top_up() -> None:
    d = decide(fc("60", 5.0, peak=8.0), state(topups_allowed=30), PARAMS, 0.0)
    # Wanted (10 + 8 * 95 - 60) / 50; bought now: the floor's 3, plus one for the headroom.
    assert (d.action, d.count, d.wanted) == (Action.TOP_UP, 4, 15)
    assert d.next_poll_in == PARAMS.poll_min


def test_caps_limit_the_count() -> None:
    d = decide(fc("60", 5.0), state(topups_allowed=2), PARAMS, 0.0)
    assert (d.action, d.count, d.wanted) == (Action.TOP_UP, 2, 9)
    assert "caps allow 2" in d.reason


def test_a_thin_forecast_buys_one_top_up_at_a_time() -> None:
    d = decide(fc("60", 5.0, confidence=0.01), READY, PARAMS, 0.0)
    assert (d.action, d.count, d.wanted) == (Action.TOP_UP, 1, 9)
    assert "few readings yet" in d.reason


def test_one_top_up_in_hand_by_default() -> None:
    """Without min_headroom the reserve is one top-up amount: a burst of that size inside one
    poll interval is absorbed before the guard looks again."""
    params = dataclasses.replace(PARAMS, min_headroom=None)
    assert decide(fc("59", 0.01), READY, params, 0.0).action is Action.TOP_UP  # < 10 + 50
    assert decide(fc("61", 0.01), READY, params, 0.0).action is Action.NOTHING


def test_max_balance_stops_headroom_top_ups_and_polls_faster_instead() -> None:
    params = dataclasses.replace(PARAMS, max_balance=Decimal(80))
    d = decide(fc("40", 0.5), READY, params, 0.0)  # level 57.5, but 40 + 50 > 80
    assert (d.action, d.blocked_by) == (Action.NOTHING, "max_balance")
    assert d.next_poll_in < PARAMS.poll_interval
    assert "TOPUP_GUARD_MAX_BALANCE" in d.reason
    urgent = decide(fc("12", 0.5), READY, params, 0.0)  # the floor is at stake: still tops up
    assert urgent.action is Action.TOP_UP


BLOCKED = [
    ("in_flight", {"in_flight": True}),
    ("not_leader", {"may_spend": False}),
    ("auto_reload_off", {"auto_reload": False}),
    ("breaker", {"breaker_open": True}),
    ("caps", {"topups_allowed": 0}),
    ("dry_run", {"dry_run": True}),
]


@pytest.mark.parametrize(("blocker", "changes"), BLOCKED, ids=[b for b, _ in BLOCKED])
def test_a_blocked_top_up_warns(blocker: str, changes: dict[str, object]) -> None:
    d = decide(fc("60", 5.0), state(**changes), PARAMS, 0.0)
    assert d.action is Action.WARN
    assert d.blocked_by == blocker
    assert (d.count, d.wanted) == (0, 9)
    assert "would top up 9 × 50.00 EUR" in d.reason


@pytest.mark.parametrize(("blocker", "changes"), BLOCKED[:-1], ids=[b for b, _ in BLOCKED[:-1]])
def test_a_blocked_top_up_far_from_exhaustion_stays_quiet(
    blocker: str, changes: dict[str, object]
) -> None:
    # 11 - 0.05 * 40 = 9 is below the floor, but empty only in 220 s: beyond a 100 s horizon.
    params = dataclasses.replace(PARAMS, horizon=100.0)
    d = decide(fc("11", 0.05), state(**changes), params, 0.0)
    assert d.action is Action.NOTHING
    assert (d.blocked_by, d.wanted, d.count) == (blocker, 1, 0)


def test_dry_run_warns_whenever_it_would_have_topped_up() -> None:
    params = dataclasses.replace(PARAMS, horizon=100.0)
    d = decide(fc("11", 0.05), state(dry_run=True), params, 0.0)
    assert (d.action, d.blocked_by, d.wanted, d.count) == (Action.WARN, "dry_run", 1, 0)


def test_blockers_are_reported_in_order_dry_run_last() -> None:
    d = decide(fc("60", 5.0), state(dry_run=True, breaker_open=True), PARAMS, 0.0)
    assert d.blocked_by == "breaker"


@pytest.mark.parametrize(
    ("changes", "action", "blocked_by"),
    [
        ({}, Action.NOTHING, None),  # the guard will act when the time comes
        ({"auto_reload": False}, Action.WARN, "auto_reload_off"),
        ({"breaker_open": True}, Action.WARN, "breaker"),
        ({"topups_allowed": 0}, Action.WARN, "caps"),
        ({"dry_run": True}, Action.WARN, "dry_run"),
        ({"in_flight": True}, Action.NOTHING, None),  # a top-up is on its way
        ({"may_spend": False}, Action.NOTHING, None),  # the leader will act
    ],
)
def test_exhaustion_within_horizon_far_from_the_trigger_warns_only_if_guard_cannot_act(
    changes: dict[str, object], action: Action, blocked_by: str | None
) -> None:
    d = decide(fc("200", 0.5), state(**changes), PARAMS, 0.0)  # empty in 400 s, floor far off
    assert d.exhaustion_within_horizon
    assert (d.action, d.blocked_by, d.count) == (action, blocked_by, 0)


@pytest.mark.parametrize(
    ("balance", "rate", "action", "count"),
    [
        ("5", 0.0, Action.NOTHING, 0),  # below the floor, nothing spent: idle, leave it
        ("0", 0.0, Action.TOP_UP, 1),  # empty: a prepaid account cannot spend, so cannot look busy
        ("-3", 0.0, Action.TOP_UP, 1),
        ("5", 0.001, Action.TOP_UP, 1),  # below the floor and spending
        ("-30", 0.01, Action.TOP_UP, 1),  # postpaid below zero and spending: 40.4 short
        ("-60", 0.01, Action.TOP_UP, 2),
    ],
)
def test_idle_wallet_rule(balance: str, rate: float, action: Action, count: int) -> None:
    d = decide(fc(balance, rate), READY, PARAMS, 0.0)
    assert (d.action, d.count) == (action, count)
    if action is Action.NOTHING:
        assert "idle" in d.reason


def test_next_poll_shrinks_as_exhaustion_nears_only_when_the_guard_cannot_top_up() -> None:
    blocked = state(topups_allowed=0)
    polls = [decide(fc(str(b), 0.1), blocked, PARAMS, 0.0).next_poll_in for b in range(200, 9, -1)]
    assert polls == sorted(polls, reverse=True)
    assert polls[0] == PARAMS.poll_interval
    assert polls[-1] == PARAMS.poll_min
    assert any(PARAMS.poll_min < p < PARAMS.poll_interval for p in polls)
    ready = {decide(fc(str(b), 0.1), READY, PARAMS, 0.0).next_poll_in for b in range(200, 9, -5)}
    assert ready == {PARAMS.poll_interval, PARAMS.poll_min}  # sleep, or top up and look again


def test_next_poll_comes_a_third_of_the_way_to_the_act_by_point_when_blocked() -> None:
    # 18 EUR at 0.1 EUR/s: the floor in 80 s, so a top-up must go out within 80 - 5 - 30 s.
    d = decide(fc("18", 0.1), state(topups_allowed=0), PARAMS, 0.0)
    assert d.next_poll_in == pytest.approx(45 / 3)


def test_a_recent_burst_raises_the_headroom_instead_of_the_poll_rate() -> None:
    calm = decide(fc("40", 0.1), READY, PARAMS, 0.0)
    bursty = decide(fc("40", 0.1, peak=0.4), READY, PARAMS, 0.0)
    assert (calm.action, calm.next_poll_in) == (Action.NOTHING, PARAMS.poll_interval)
    assert bursty.action is Action.TOP_UP  # 40 < 10 + 0.4 * 95: top up now, then sleep


def test_burst_memory_builds_headroom_before_a_recurring_burst() -> None:
    quiet = decide(fc("40", 0.01), READY, PARAMS, 0.0)
    before_campaign = decide(fc("40", 0.01), state(remembered_rate=0.5), PARAMS, 0.0)
    assert quiet.action is Action.NOTHING
    assert before_campaign.action is Action.TOP_UP


def test_polls_fast_while_a_top_up_is_in_flight() -> None:
    assert decide(fc("500", 0.01), state(in_flight=True), PARAMS, 0.0).next_poll_in == 5.0


def test_first_poll_without_forecast_does_nothing_and_polls_soon() -> None:
    d = decide(None, READY, PARAMS, 0.0)
    assert (d.action, d.next_poll_in, d.projected_balance) == (Action.NOTHING, 5.0, None)


def test_a_stale_forecast_is_extrapolated_to_now() -> None:
    fresh = decide(fc("50", 0.25, t=100.0), READY, PARAMS, 100.0)
    stale = decide(fc("50", 0.25, t=0.0), READY, PARAMS, 100.0)
    assert fresh.action is Action.NOTHING  # 50 >= 10 + 0.25 * 95
    assert stale.action is Action.TOP_UP  # 100 s of spend since the sample: 25 EUR gone


def test_reason_states_the_numbers() -> None:
    d = decide(fc("12.40", 0.21, peak=0.8), READY, PARAMS, 0.0)
    assert d.action is Action.TOP_UP
    for text in ("12.40 EUR", "floor 10.00 EUR", "0.21 EUR/s", "burst 0.8 EUR/s", "2 × 50.00 EUR"):
        assert text in d.reason
    assert f"{d.projected_balance:.2f} EUR" in d.reason
    assert "40 s" in d.reason  # the lead time


def test_lead_time_is_next_poll_plus_latency_plus_margin() -> None:
    assert lead_time(PARAMS, 20.0) == 55.0


def test_params_from_settings() -> None:
    settings = Settings(min_balance=Decimal(25), poll_min=2, poll_interval=30)
    params = PolicyParams.from_settings(settings)
    assert (params.min_balance, params.poll_min, params.poll_interval) == (Decimal(25), 2, 30)
    assert (params.horizon, params.topup_latency, params.safety_margin) == (600, 5, 30)


@given(
    balance=st.decimals(min_value=-(10**9), max_value=10**9, places=4),
    rate=st.one_of(st.just(0.0), st.floats(min_value=0, max_value=1e9)),
    peak=st.floats(min_value=0, max_value=1e12),
    stale=st.floats(min_value=0, max_value=1e7),
    allowed=st.integers(min_value=0, max_value=50),
    amount=st.one_of(st.none(), st.decimals(min_value="0.01", max_value=10**4, places=2)),
)
def test_any_decision_is_well_formed(
    balance: Decimal,
    rate: float,
    peak: float,
    stale: float,
    allowed: int,
    amount: Decimal | None,
) -> None:
    f = fc(balance, rate, peak=max(rate, peak))
    d = decide(f, state(topups_allowed=allowed, topup_amount=amount), PARAMS, stale)
    assert PARAMS.poll_min <= d.next_poll_in <= PARAMS.poll_interval
    assert not math.isnan(d.next_poll_in)
    assert 0 <= d.count <= allowed
    assert (d.count > 0) == (d.action is Action.TOP_UP)
    assert d.wanted >= d.count
    assert d.projected_balance is not None
    assert d.projected_balance.is_finite()
    assert next_poll(f, PARAMS, stale) >= PARAMS.poll_min


def test_refused_messages_mean_an_empty_balance_whatever_it_reads() -> None:
    """The tripwire: senders report out-of-credit refusals, so the few cents the balance shows
    cannot pay; not an idle wallet, and below the floor."""
    params = dataclasses.replace(PARAMS, min_balance=Decimal(0))
    assert decide(fc("0.005", 0.0), READY, params, 0.0).action is Action.NOTHING
    refused = decide(fc("0.005", 0.0), state(messages_refused=True), params, 0.0)
    assert (refused.action, refused.count) == (Action.TOP_UP, 1)
