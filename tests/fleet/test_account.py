"""One subaccount's observe/decide: the pure policy with transfers as the unit of money."""

from __future__ import annotations

from decimal import Decimal

from topup_guard.fleet.account import IDLE_REFRESH_S, SubaccountGuard
from topup_guard.fleet.rules import AccountRules
from topup_guard.model import Subaccount
from topup_guard.policy.decide import Action, PolicyParams

BASE = PolicyParams(
    min_balance=Decimal(10),
    horizon=3600.0,
    poll_min=2.0,
    poll_interval=60.0,
    topup_latency=120.0,
    safety_margin=10.0,
)
RULES = AccountRules(floor=Decimal(5), transfer_amount=Decimal(10))


def sub(balance: str | None, *, credit_limit: str = "0", suspended: bool = False) -> Subaccount:
    return Subaccount(
        api_key="k1",
        name="acme",
        balance=None if balance is None else Decimal(balance),
        credit_limit=Decimal(credit_limit),
        use_primary_account_balance=balance is None,
        suspended=suspended,
        created_at=None,
    )


def feed(guard: SubaccountGuard, balances: list[str], step: float = 10.0) -> float:
    t = 0.0
    for b in balances:
        guard.observe(sub(b), t)
        t += step
    return t - step


def decide(guard: SubaccountGuard, now: float) -> None:
    guard.decide(now, allowed=10, in_flight=False, may_spend=True, dry_run=False)


def test_a_spending_subaccount_short_of_headroom_asks_for_whole_transfers() -> None:
    guard = SubaccountGuard(sub("20"), RULES, BASE)
    now = feed(guard, [f"{20 - 0.5 * i:.2f}" for i in range(12)])  # 0.05 EUR/s
    decide(guard, now)
    need = guard.need(now)
    assert need.amount > 0
    assert need.amount % RULES.transfer_amount == 0
    assert guard.params.min_balance == RULES.floor  # the subaccount's floor, not the primary's
    assert guard.params.topup_latency < BASE.topup_latency  # a transfer lands with the answer


def test_an_idle_subaccount_above_its_floor_asks_for_nothing() -> None:
    guard = SubaccountGuard(sub("40"), RULES, BASE)
    now = feed(guard, ["40"] * 8, step=IDLE_REFRESH_S)
    decide(guard, now)
    assert guard.need(now).amount == 0
    assert guard.flow() == (0.0, 0.0)


def test_an_unchanged_reading_adds_nothing_and_a_quiet_account_never_grows() -> None:
    guard = SubaccountGuard(sub("40"), RULES, BASE)
    assert guard.observe(sub("40"), 0.0)
    assert guard.observe(sub("40"), 0.5)  # the second record: a forecast needs two
    decide(guard, 0.5)
    assert not guard.observe(sub("40"), 1.0)  # idle: the last record stands
    assert not guard.observe(sub("40"), IDLE_REFRESH_S - 1)
    # Nothing was ever spent: a refresh would teach the windows nothing, however long it is.
    for hour in range(1, 25):
        assert not guard.observe(sub("40"), hour * 3600.0)
        decide(guard, hour * 3600.0)
    assert guard.tracker.forecast(0.0) is not None
    assert guard.tracker.forecast(0.0).samples == 2  # type: ignore[union-attr]
    assert guard.observe(sub("39"), 24 * 3600.0 + 2)  # a change is always taken


def test_an_unchanged_reading_refreshes_windows_that_still_hold_spend() -> None:
    guard = SubaccountGuard(sub("40"), RULES, BASE)
    now = feed(guard, ["40", "39", "38"], step=60.0)
    decide(guard, now)
    assert guard.flow()[0] > 0
    assert not guard.observe(sub("38"), now + IDLE_REFRESH_S - 1)
    assert guard.observe(sub("38"), now + IDLE_REFRESH_S + 1)  # the old spend must slide out


def test_a_burst_after_a_long_quiet_stretch_is_measured_over_the_last_cycle() -> None:
    """The quiet readings were not recorded, but they were seen: the drop happened within the
    last cycle, not spread over the hour since the last record (a burst read as a trickle)."""
    guard = SubaccountGuard(sub("40"), RULES, BASE)
    feed(guard, ["40", "40"], step=1.0)
    decide(guard, 1.0)
    t = 1.0
    while t < 3600.0:
        t += 2.0
        assert not guard.observe(sub("40"), t)
        decide(guard, t)
    assert guard.observe(sub("36"), t + 2.0)  # 4 EUR in 2 s
    decide(guard, t + 2.0)
    _, burst = guard.flow()
    # The peak is the rate over the worst 30-s window: all 4 EUR fall inside one. Spread over
    # the quiet hour it would read 4/3600 EUR/s, and the account would not be funded for it.
    assert burst >= 4 / 30 * 0.99, f"4 EUR in 2 s read as {burst:.4f} EUR/s"


def test_an_idle_subaccount_below_its_floor_is_funded_on_its_second_reading() -> None:
    guard = SubaccountGuard(sub("3"), RULES, BASE)
    assert guard.observe(sub("3"), 0.0)
    decide(guard, 0.0)
    assert guard.need(0.0).amount == 0  # one record: no forecast yet
    assert guard.observe(sub("3"), 1.0)  # unchanged, but the forecast needs it
    decide(guard, 1.0)
    assert guard.need(1.0).amount >= RULES.transfer_amount
    assert not guard.observe(sub("3"), 2.0)  # from now on idle readings are skipped


def test_the_credit_facility_counts_as_spendable() -> None:
    guard = SubaccountGuard(sub("-3", credit_limit="-50"), RULES, BASE)
    guard.observe(sub("-3", credit_limit="-50"), 0.0)
    assert guard.spendable == Decimal(47)


def test_a_transfer_s_rise_is_believed_at_once_not_held() -> None:
    guard = SubaccountGuard(sub("20"), RULES, BASE)
    now = feed(guard, [f"{20 - 0.5 * i:.2f}" for i in range(12)])
    guard.note_credit(Decimal(30))
    assert guard.observe(sub(f"{14.5 + 30 - 0.5:.2f}"), now + 10)
    assert guard.judge.held is None
    assert guard.spendable == Decimal("44.00")


def test_an_empty_subaccount_is_not_an_idle_wallet() -> None:
    guard = SubaccountGuard(sub("0"), RULES, BASE)
    now = feed(guard, ["0", "0", "0"], step=IDLE_REFRESH_S)
    decide(guard, now)
    assert guard.decision is not None
    assert guard.decision.action is Action.TOP_UP
    assert guard.spendable == 0


def test_a_transfer_in_doubt_blocks_another_for_that_account() -> None:
    guard = SubaccountGuard(sub("0"), RULES, BASE)
    now = feed(guard, ["0", "0"], step=IDLE_REFRESH_S)
    guard.decide(now, allowed=10, in_flight=True, may_spend=True, dry_run=False)
    assert guard.need(now).amount == 0
    assert guard.decision is not None
    assert guard.decision.wanted > 0  # it still wants money: only the doubt holds it back
    assert guard.decision.blocked_by is not None


def test_a_quiet_account_s_decision_stands_until_something_changes() -> None:
    guard = SubaccountGuard(sub("40"), RULES, BASE)
    feed(guard, ["40", "40"], step=1.0)
    first = guard.decide(1.0, allowed=10, in_flight=False, may_spend=True, dry_run=False)
    assert first.action is Action.NOTHING
    assert not guard.observe(sub("40"), 3.0)
    same = guard.decide(3.0, allowed=10, in_flight=False, may_spend=True, dry_run=False)
    assert same is first  # nothing spent, nothing read, nothing else changed
    other = guard.decide(5.0, allowed=0, in_flight=False, may_spend=True, dry_run=False)
    assert other is not first  # the caps changed: decided anew
    later = guard.decide(IDLE_REFRESH_S + 10, allowed=0, in_flight=False, may_spend=True,
                         dry_run=False)  # fmt: skip
    assert later is not other  # and redone every IDLE_REFRESH_S regardless
    assert guard.observe(sub("39.50"), IDLE_REFRESH_S + 12)  # it spends again
    spent = guard.decide(IDLE_REFRESH_S + 12, allowed=0, in_flight=False, may_spend=True,
                         dry_run=False)  # fmt: skip
    assert spent is not later


def test_a_spending_account_is_decided_anew_every_cycle() -> None:
    guard = SubaccountGuard(sub("40"), RULES, BASE)
    now = feed(guard, ["40", "39.5", "39"], step=10.0)
    first = guard.decide(now, allowed=10, in_flight=False, may_spend=True, dry_run=False)
    again = guard.decide(now + 2, allowed=10, in_flight=False, may_spend=True, dry_run=False)
    assert again is not first
