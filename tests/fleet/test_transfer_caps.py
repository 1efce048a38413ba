"""Transfer caps per subaccount and fleet-wide: examples, then properties over random histories."""

from __future__ import annotations

from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from topup_guard.fleet.transfer_caps import (
    DAY,
    HOUR,
    Caps,
    CapsView,
    account_allowance,
    allowance,
    fleet_allowance,
)
from topup_guard.fleet.transfer_ledger import TransferEntry, TransferState

NOW = 1_800_000_000.0
ACCOUNT = Caps(max_transfers_per_hour=2, max_daily_amount=Decimal(50))
FLEET = Caps(max_transfers_per_hour=5, max_daily_amount=Decimal(100))
_ids = iter(range(1, 10**9))


def entry(
    account: str, wall: float, amount: Decimal = Decimal(10),
    state: TransferState = TransferState.SUCCEEDED, applied: Decimal | None = None,
) -> TransferEntry:  # fmt: skip
    tid = next(_ids)
    return TransferEntry(
        transfer_id=tid, account=account, amount=amount, reference=f"tg-x-{tid}", state=state,
        created_wall=wall, updated_wall=wall, epoch=0, holder="me", vonage_id=None, detail="",
        reason="", applied_amount=applied,
    )  # fmt: skip


def test_an_account_with_no_history_may_get_as_many_as_its_tightest_cap_allows() -> None:
    got = allowance([], "a", Decimal(10), NOW, account_rules=ACCOUNT, fleet_rules=FLEET)
    assert (got.transfers, got.limited_by, got.clears_at) == (2, (), None)


def test_the_hourly_cap_clears_when_the_oldest_transfer_is_an_hour_old() -> None:
    history = [entry("a", NOW - 1000), entry("a", NOW - 10)]
    got = allowance(history, "a", Decimal(10), NOW, account_rules=ACCOUNT, fleet_rules=FLEET)
    assert got.transfers == 0
    assert got.limited_by == ("account_hourly",)
    assert got.clears_at == NOW - 1000 + HOUR
    later = allowance(history, "a", Decimal(10), got.clears_at, account_rules=ACCOUNT,
                      fleet_rules=FLEET)  # fmt: skip
    assert later.transfers == 1


def test_the_daily_amount_counts_doubtful_transfers_at_their_largest_amount() -> None:
    history = [
        entry("a", NOW - 20 * HOUR, Decimal(20), TransferState.UNCONFIRMED),
        entry("a", NOW - 10 * HOUR, Decimal(10), TransferState.SUCCEEDED, applied=Decimal(25)),
    ]
    got = account_allowance(history, "a", Decimal(10), NOW, ACCOUNT)
    assert got.transfers == 0  # 20 + 25 = 45 used, 10 more would be 55 > 50
    assert got.limited_by == ("account_daily_amount",)
    assert got.clears_at == NOW - 20 * HOUR + DAY


def test_failed_and_dry_run_transfers_never_count() -> None:
    history = [entry("a", NOW - 5, state=s) for s in (TransferState.FAILED, TransferState.DRY_RUN)]
    history *= 3
    assert account_allowance(history, "a", Decimal(10), NOW, ACCOUNT).transfers == 2


def test_pending_and_unknown_count_like_succeeded() -> None:
    history = [entry("a", NOW - 5, state=s) for s in (TransferState.PENDING, TransferState.UNKNOWN)]
    assert account_allowance(history, "a", Decimal(10), NOW, ACCOUNT).transfers == 0


def test_other_accounts_use_the_fleet_caps_but_not_this_accounts() -> None:
    history = [entry(f"s{i}", NOW - 60) for i in range(5)]
    got = allowance(history, "a", Decimal(10), NOW, account_rules=ACCOUNT, fleet_rules=FLEET)
    assert got.limited_by == ("fleet_hourly",)
    assert got.clears_at == NOW - 60 + HOUR
    assert account_allowance(history, "a", Decimal(10), NOW, ACCOUNT).transfers == 2


def test_an_amount_above_a_daily_cap_is_never_allowed_and_says_so() -> None:
    got = fleet_allowance([], Decimal(101), NOW, FLEET)
    assert (got.transfers, got.limited_by, got.clears_at) == (0, ("fleet_daily_amount",), None)


def test_a_transfer_from_a_wall_clock_that_went_back_still_counts() -> None:
    got = account_allowance([entry("a", NOW + 600)] * 2, "a", Decimal(10), NOW, ACCOUNT)
    assert got.transfers == 0


# --- properties -----------------------------------------------------------------------------
accounts = st.sampled_from(["a", "b", "c"])
amounts = st.sampled_from([Decimal(5), Decimal(10), Decimal("12.50"), Decimal(30)])
states = st.sampled_from(list(TransferState))
steps = st.lists(
    st.tuples(st.floats(0, 4 * HOUR), accounts, amounts, states), min_size=1, max_size=60
)
caps = st.builds(Caps, st.integers(1, 6), st.sampled_from([Decimal(30), Decimal(50), Decimal(200)]))


def _window_use(
    history: list[TransferEntry], now: float, account: str | None
) -> tuple[int, Decimal]:
    mine = [e for e in history if e.state.counts and (account is None or e.account == account)]
    hour = sum(1 for e in mine if e.created_wall + HOUR > now)
    day = sum((e.amount_for_caps for e in mine if e.created_wall + DAY > now), Decimal(0))
    return hour, day


@settings(max_examples=300, deadline=None)
@given(steps=steps, account_caps=caps, fleet_caps=caps)
def test_a_sender_that_obeys_the_allowance_never_exceeds_any_cap(
    steps: list[tuple[float, str, Decimal, TransferState]], account_caps: Caps, fleet_caps: Caps
) -> None:
    history: list[TransferEntry] = []
    now = NOW
    for gap, account, amount, outcome in steps:
        now += gap
        got = allowance(history, account, amount, now, account_rules=account_caps,
                        fleet_rules=fleet_caps)  # fmt: skip
        if not got.allowed:
            continue
        history.append(entry(account, now, amount, outcome))
        for who, rules in ((account, account_caps), (None, fleet_caps)):
            hour, day = _window_use(history, now, who)
            assert hour <= rules.max_transfers_per_hour
            assert day <= rules.max_daily_amount


@settings(max_examples=300, deadline=None)
@given(steps=steps, account_caps=caps, fleet_caps=caps, amount=amounts)
def test_clears_at_is_exactly_when_the_next_transfer_becomes_allowed(
    steps: list[tuple[float, str, Decimal, TransferState]],
    account_caps: Caps,
    fleet_caps: Caps,
    amount: Decimal,
) -> None:
    history = [entry(acc, NOW + t, amt, s) for t, acc, amt, s in steps]
    now = NOW + max(t for t, *_ in steps)
    got = allowance(history, "a", amount, now, account_rules=account_caps, fleet_rules=fleet_caps)
    if got.allowed:
        assert got.clears_at is None
        assert got.limited_by == ()
        return
    assert got.limited_by
    if got.clears_at is None:  # never: the amount alone exceeds a daily cap
        assert amount > min(account_caps.max_daily_amount, fleet_caps.max_daily_amount)
        return
    assert got.clears_at > now
    at = allowance(history, "a", amount, got.clears_at, account_rules=account_caps,
                   fleet_rules=fleet_caps)  # fmt: skip
    before = allowance(history, "a", amount, got.clears_at - 0.001, account_rules=account_caps,
                       fleet_rules=fleet_caps)  # fmt: skip
    assert at.allowed
    assert not before.allowed


@settings(max_examples=200, deadline=None)
@given(steps=steps, account_caps=caps, fleet_caps=caps, amount=amounts, later=st.floats(0, DAY))
def test_waiting_never_reduces_the_allowance(
    steps: list[tuple[float, str, Decimal, TransferState]],
    account_caps: Caps,
    fleet_caps: Caps,
    amount: Decimal,
    later: float,
) -> None:
    history = [entry(acc, NOW + t, amt, s) for t, acc, amt, s in steps]
    now = NOW + 4 * HOUR
    first = allowance(history, "b", amount, now, account_rules=account_caps, fleet_rules=fleet_caps)
    then = allowance(history, "b", amount, now + later, account_rules=account_caps,
                     fleet_rules=fleet_caps)  # fmt: skip
    assert then.transfers >= first.transfers


@settings(max_examples=300, deadline=None)
@given(steps=steps, account_caps=caps, fleet_caps=caps, amount=amounts, more=steps)
def test_the_fleet_view_answers_exactly_as_allowance_before_and_after_recording(
    steps: list[tuple[float, str, Decimal, TransferState]],
    account_caps: Caps,
    fleet_caps: Caps,
    amount: Decimal,
    more: list[tuple[float, str, Decimal, TransferState]],
) -> None:
    history = [entry(acc, NOW + t, amt, s) for t, acc, amt, s in steps]
    now = NOW + 2 * DAY * (len(steps) % 2) / 2 + 3 * HOUR  # sometimes much later than all
    view = CapsView(history, now, fleet_caps)
    for t, acc, amt, s in more[:10]:
        for who in ("a", "b", "c"):
            expected = allowance(history, who, amount, now, account_rules=account_caps,
                                 fleet_rules=fleet_caps)  # fmt: skip
            assert view.allowance(who, amount, account_caps) == expected
        begun = entry(acc, now + t / 1000, amt, s)
        history.append(begun)
        view.record(begun)


def test_the_fleet_view_asks_a_thousand_subaccounts_quickly() -> None:
    import time

    history = [entry(f"s{i % 1000:04d}", NOW - i * 20) for i in range(3000)]
    view = CapsView(history, NOW, Caps(600, Decimal(50_000)))
    started = time.perf_counter()
    for i in range(1000):
        view.allowance(f"s{i:04d}", Decimal(10), ACCOUNT)
    assert time.perf_counter() - started < 0.25  # about 5 ms here; generous for a busy CI box
