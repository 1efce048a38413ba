"""The trace-only fast path of ``SimAccount.advance_to`` gives exactly the general path's results.

A backtest account has no scenario spend, so ``advance_to`` serves trace events in one tight loop
instead of stepping event by event. A zero ``spend_rate_override`` forces the general path with
the same (zero) demand, which makes it the reference.
"""

from __future__ import annotations

import contextlib
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from topup_guard.sim.account import SimAccount
from topup_guard.sim.refusals import SimRefusal

TRX = "8ef2447e69604f642ae59363aa5f781b"

events = st.lists(
    st.tuples(
        st.integers(min_value=0, max_value=2000).map(lambda t: t / 2),  # ties and half-seconds
        st.integers(min_value=0, max_value=900).map(lambda c: Decimal(c) / 100),
    ),
    max_size=60,
)
steps = st.lists(
    st.tuples(st.sampled_from(["advance", "top_up"]), st.integers(0, 2000).map(lambda t: t / 2)),
    max_size=25,
)


def account(trace: list[tuple[float, Decimal]], credit_delay: float, general: bool) -> SimAccount:
    acct = SimAccount(
        api_key="abcd1234",
        api_secret="Secret123",
        trx=TRX,
        balance=Decimal("20"),
        topup_amount=Decimal("15"),
        autoreload_threshold=Decimal("5"),
        check_min_s=40.0,
        check_max_s=90.0,
        seed=5,
        trace=trace,
        credit_delay_s=credit_delay,
    )
    if general:
        acct.spend_rate_override = Decimal(0)
    return acct


def state(a: SimAccount) -> tuple[object, ...]:
    return (
        a.now,
        a.balance,
        a.served_spend,
        a.served_events,
        a.failed_spend,
        a.failed_events,
        round(a.exhausted_seconds, 9),
        a.autoreloads,
        a.topups,
        a.next_check,
    )


@settings(max_examples=150, deadline=None)
@given(
    trace=events,
    plan=steps,
    credit_delay=st.sampled_from([0.0, 0.5, 2.0, 30.0]),
    fail=st.integers(0, 3),
)
def test_fast_path_matches_the_general_path(
    trace: list[tuple[float, Decimal]],
    plan: list[tuple[str, float]],
    credit_delay: float,
    fail: int,
) -> None:
    fast, general = account(trace, credit_delay, False), account(trace, credit_delay, True)
    fast.fail_payments = general.fail_payments = fail
    t = 0.0
    for op, dt in plan:
        t += dt
        for acct in (fast, general):
            if op == "advance":
                acct.advance_to(t)
            else:
                with contextlib.suppress(SimRefusal):
                    acct.top_up(TRX, t)
        assert state(fast) == state(general)
    fast.advance_to(t + 1000)
    general.advance_to(t + 1000)
    assert state(fast) == state(general)


def test_a_credit_due_with_an_event_lands_before_the_event() -> None:
    acct = account([(15.0, Decimal("10"))], credit_delay=5.0, general=False)
    acct.set_balance(Decimal(0), 0.0)
    acct.top_up(TRX, 10.0)  # 15 EUR credited at t=15, the same instant as the 10 EUR event
    acct.advance_to(20.0)
    assert (acct.failed_events, acct.served_events, acct.balance) == (0, 1, Decimal(5))


def test_an_event_due_with_vonages_check_is_seen_by_the_check() -> None:
    check_at = account([], 0.0, general=False).next_check  # seeded: the same for every account
    acct = account([(check_at, Decimal("16"))], credit_delay=0.0, general=False)
    acct.advance_to(check_at + 1)
    # 20 - 16 = 4 EUR is below the 5 EUR threshold when Vonage looks: it reloads at once.
    assert acct.autoreloads == [(check_at, Decimal("15"))]
