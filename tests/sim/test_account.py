"""SimAccount: the pure account model shared by the simulator and the backtest."""

from __future__ import annotations

from decimal import Decimal

import pytest

from topup_guard.errors import ConfigError
from topup_guard.sim import Scenario, SimAccount, SimRefusal, default_scenario
from topup_guard.sim.scenario import parse_scenario
from topup_guard.sim.spend import Burst, Phase, SpendProfile

D = Decimal
TRX = "8ef2447e69604f642ae59363aa5f781b"


def account(**overrides: object) -> SimAccount:
    kwargs: dict[str, object] = {
        "api_key": "abcd1234",
        "api_secret": "Secret123",
        "trx": TRX,
        "balance": D("100"),
        "topup_amount": D("50"),
        "autoreload_threshold": D("10"),
        "seed": 1,
    }
    kwargs.update(overrides)
    return SimAccount(**kwargs)  # type: ignore[arg-type]


# --- demand -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("balance", "events", "balance_after", "failed_spend", "failed_events", "exhausted"),
    [
        ("10", [(1, "4"), (2, "4")], "2", "0", 0, 0.0),
        # the third event does not fit: it fails whole, nothing of it is taken
        ("10", [(1, "4"), (2, "4"), (3, "4")], "2", "4", 1, 2.0),
        # a smaller event served later ends the exhausted period
        ("10", [(1, "4"), (2, "4"), (3, "4"), (4, "1")], "1", "4", 1, 1.0),
        ("0", [(0, "0.01"), (3, "0.01")], "0", "0.02", 2, 5.0),
    ],
)
def test_trace_events_are_served_whole_or_failed_whole(
    balance: str,
    events: list[tuple[float, str]],
    balance_after: str,
    failed_spend: str,
    failed_events: int,
    exhausted: float,
) -> None:
    acc = account(balance=D(balance), trace=[(t, D(eur)) for t, eur in events])
    acc.advance_to(5.0)
    assert acc.balance == D(balance_after)
    assert acc.failed_spend == D(failed_spend)
    assert acc.failed_events == failed_events
    assert acc.exhausted_seconds == pytest.approx(exhausted)
    assert acc.served_spend + acc.failed_spend == sum(D(e) for _, e in events)


def test_scenario_spend_is_billed_per_message_and_independent_of_step_size() -> None:
    profile = SpendProfile([Phase(0, 1000, D("0.075"))])  # 10 messages/s at 0.0075
    one_step, many_steps = account(spend=profile), account(spend=profile)
    one_step.advance_to(10.0)
    for t in (0.3, 1.7, 1.71, 4.0, 9.99, 10.0):
        many_steps.advance_to(t)
    assert one_step.served_events == many_steps.served_events == 100
    assert one_step.balance == many_steps.balance == D("100") - D("0.75")


def test_scenario_spend_fails_once_the_balance_cannot_pay_a_message() -> None:
    acc = account(balance=D("0.75"), spend=SpendProfile([Phase(0, 1000, D("0.075"))]))
    acc.advance_to(20.0)
    assert acc.balance == 0
    assert acc.served_events == 100
    assert acc.failed_events == 100
    assert acc.failed_spend == D("0.75")
    assert acc.exhausted_seconds == pytest.approx(10.0, abs=0.2)


def test_a_credit_ends_the_exhausted_period() -> None:
    acc = account(balance=D("0"), spend=SpendProfile([Phase(0, 1000, D("0.075"))]))
    acc.advance_to(10.0)
    acc.set_balance(D("100"), 10.0)
    acc.advance_to(30.0)
    assert acc.exhausted_seconds == pytest.approx(10.0, abs=0.2)


def test_bursts_add_to_phases_and_the_pattern_repeats() -> None:
    profile = SpendProfile([Phase(0, 100, D("0.01"))], [Burst(10, 5, D("1"))], repeat_every=100)
    assert profile.rate_at(5) == D("0.01")
    assert profile.rate_at(12) == D("1.01")
    assert profile.rate_at(112) == D("1.01")
    assert profile.rate_at(16) == D("0.01")
    total = sum(((e - s) * float(r) for s, e, r in profile.segments(0, 300)), 0.0)
    assert total == pytest.approx(3 * (1.0 + 5.0))


def test_spend_rate_override_replaces_the_scenario_and_can_be_cleared() -> None:
    acc = account(spend=SpendProfile([Phase(0, 1000, D("0.075"))]))
    acc.set_spend_rate(D("0"), 0.0)
    acc.advance_to(10.0)
    assert acc.served_events == 0
    acc.set_spend_rate(None, 10.0)
    acc.advance_to(20.0)
    assert acc.served_events == 100


# --- Vonage's auto-reload ---------------------------------------------------------------------
def test_autoreload_checks_every_five_to_ten_minutes() -> None:
    acc = account(balance=D("5"))
    times = []
    for _ in range(20):
        times.append(acc.next_check)
        acc.advance_to(acc.next_check)
        acc.set_balance(D("5"), acc.now)
    gaps = [b - a for a, b in zip([0.0, *times], times, strict=False)]
    assert all(300 <= gap <= 600 for gap in gaps)
    assert len(set(gaps)) > 1  # random, not fixed
    assert [t for t, _ in acc.autoreloads] == times


@pytest.mark.parametrize(("balance", "reloaded"), [("9.99", True), ("10", False), ("50", False)])
def test_autoreload_adds_the_amount_only_below_the_threshold(balance: str, reloaded: bool) -> None:
    acc = account(balance=D(balance))
    acc.advance_to(600.0)
    assert (len(acc.autoreloads) == 1) is reloaded
    assert acc.balance == D(balance) + (D("50") if reloaded else 0)


def test_same_seed_same_check_times() -> None:
    assert account(seed=3).next_check == account(seed=3).next_check != account(seed=4).next_check


def test_three_failed_payments_in_a_row_disable_autoreload() -> None:
    acc = account(balance=D("5"))
    acc.fail_payments = 3
    acc.advance_to(3 * 600.0)
    assert acc.auto_reload is False
    assert acc.payments_failed == 3
    assert acc.autoreloads == []
    with pytest.raises(SimRefusal) as refused:
        acc.top_up(TRX, acc.now)
    assert refused.value.code == "not-auto-reload-enabled"


def test_a_successful_payment_resets_the_failure_count() -> None:
    acc = account(balance=D("5"))
    acc.fail_payments = 2
    acc.advance_to(3 * 600.0)
    assert acc.auto_reload is True
    assert len(acc.autoreloads) == 1


# --- top-up -----------------------------------------------------------------------------------
def test_top_up_with_the_right_trx_adds_the_autoreload_amount() -> None:
    acc = account()
    assert acc.top_up(TRX, 5.0) == D("50")
    assert acc.balance == D("150")
    assert acc.topups == [(5.0, D("50"))]


@pytest.mark.parametrize(
    ("trx", "auto_reload", "fail_payments", "code"),
    [
        ("wrong", True, 0, "not-auto-reload-enabled"),
        (TRX, False, 0, "not-auto-reload-enabled"),
        (TRX, True, 1, "topup-failed"),
    ],
)
def test_refused_top_up_credits_nothing(
    trx: str, auto_reload: bool, fail_payments: int, code: str
) -> None:
    acc = account(auto_reload=auto_reload)
    acc.fail_payments = fail_payments
    with pytest.raises(SimRefusal) as refused:
        acc.top_up(trx, 1.0)
    assert refused.value.code == code
    assert acc.balance == D("100")
    assert acc.topups == []


def test_failed_top_ups_count_towards_disabling_autoreload() -> None:
    acc = account()
    acc.fail_payments = 3
    for _ in range(3):
        with pytest.raises(SimRefusal):
            acc.top_up(TRX, 1.0)
    assert acc.auto_reload is False


def test_top_up_credit_lands_after_the_delay() -> None:
    acc = account(credit_delay_s=2.0)
    acc.top_up(TRX, 10.0)
    assert acc.balance == D("100")
    acc.advance_to(11.9)
    assert acc.balance == D("100")
    acc.advance_to(12.0)
    assert acc.balance == D("150")


def test_repr_hides_secret_and_trx() -> None:
    text = repr(account()) + repr(account().secrets_of("abcd1234"))
    assert "Secret123" not in text
    assert TRX not in text


# --- secrets ----------------------------------------------------------------------------------
def test_at_most_two_secrets_and_both_authenticate() -> None:
    acc = account()
    acc.create_secret("abcd1234", "NewSecret9", 1.0)
    assert acc.authenticate("abcd1234", "Secret123")
    assert acc.authenticate("abcd1234", "NewSecret9")
    assert not acc.authenticate("abcd1234", "Wrong1234")
    assert not acc.authenticate("other", "Secret123")
    with pytest.raises(SimRefusal) as refused:
        acc.create_secret("abcd1234", "Third1234", 2.0)
    assert refused.value.code == "add-excess-secret"


def test_the_last_secret_cannot_be_revoked_and_a_revoked_one_stops_working() -> None:
    acc = account()
    store = acc.secrets_of("abcd1234")
    (first,) = store.list()
    with pytest.raises(SimRefusal) as refused:
        store.revoke(first.id)
    assert refused.value.code == "delete-last-secret"
    acc.create_secret("abcd1234", "NewSecret9", 1.0)
    store.revoke(first.id)
    assert not acc.authenticate("abcd1234", "Secret123")
    assert acc.authenticate("abcd1234", "NewSecret9")


@pytest.mark.parametrize(
    ("value", "valid"),
    [
        ("Abcdefg1", True),
        ("Abcdefghijklmnopqrstuvw12", True),  # 25
        ("Abcdef1", False),  # 7
        ("Abcdefghijklmnopqrstuvw123", False),  # 26
        ("abcdefg1", False),  # no upper
        ("ABCDEFG1", False),  # no lower
        ("Abcdefgh", False),  # no digit
        (12345678, False),
    ],
)
def test_secret_complexity(value: object, valid: bool) -> None:
    acc = account()
    if valid:
        acc.create_secret("abcd1234", value, 1.0)
        return
    with pytest.raises(SimRefusal) as refused:
        acc.create_secret("abcd1234", value, 1.0)
    assert refused.value.code == "secret-validation"
    assert refused.value.invalid_parameters[0]["name"] == "secret"


def test_unknown_secret_id_and_api_key_are_refused() -> None:
    acc = account()
    with pytest.raises(SimRefusal, match="invalid-id"):
        acc.secrets_of("abcd1234").get("nope")
    with pytest.raises(SimRefusal, match="invalid-api-key"):
        acc.secrets_of("unknown")


# --- subaccounts and transfers ----------------------------------------------------------------
def test_shared_subaccount_shows_no_balance_and_own_shows_its_own() -> None:
    acc = account()
    shared = acc.add_subaccount("shared01")
    own = acc.add_subaccount("own00001", balance=D("5"))
    assert (shared.use_primary_account_balance, shared.balance, shared.credit_limit) == (
        True,
        None,
        None,
    )
    assert (own.use_primary_account_balance, own.balance) == (False, D("5"))


def test_transfers_move_money_both_ways_and_are_listed() -> None:
    acc = account()
    acc.add_subaccount("own00001", balance=D("5"))
    acc.transfer("abcd1234", "own00001", D("20.5"), "campaign", 1.0)
    acc.transfer("own00001", "abcd1234", 3, None, 2.0)
    assert acc.balance == D("82.5")
    assert acc.subaccount("own00001").balance == D("22.5")
    listed = acc.list_transfers("1970-01-01T00:00:00Z")
    assert [(t.from_key, t.amount, t.reference) for t in listed] == [
        ("abcd1234", D("20.5"), "campaign"),
        ("own00001", D("3"), None),
    ]
    assert acc.list_transfers("2100-01-01T00:00:00Z") == []


@pytest.mark.parametrize(
    ("from_key", "to_key", "amount", "code"),
    [
        ("abcd1234", "own00001", D("100.01"), "insufficient-credit"),
        ("own00001", "abcd1234", D("5.01"), "insufficient-credit"),
        ("abcd1234", "shared01", D("1"), "invalid-transfer"),
        ("abcd1234", "stranger", D("1"), "invalid-transfer"),
        ("own00001", "own00002", D("1"), "invalid-transfer"),
        ("abcd1234", "own00001", D("-1"), "transfer-validation"),
        ("abcd1234", "own00001", "1", "transfer-validation"),
        ("abcd1234", "own00001", True, "transfer-validation"),
        ("abcd1234", "abcd1234", D("1"), "transfer-validation"),
        (None, "abcd1234", D("1"), "transfer-validation"),
    ],
)
def test_invalid_transfers_are_refused_and_move_nothing(
    from_key: object, to_key: object, amount: object, code: str
) -> None:
    acc = account()
    acc.add_subaccount("shared01")
    acc.add_subaccount("own00001", balance=D("5"))
    acc.add_subaccount("own00002", balance=D("5"))
    with pytest.raises(SimRefusal) as refused:
        acc.transfer(from_key, to_key, amount, None, 1.0)
    assert refused.value.code == code
    assert acc.balance == D("100")
    assert acc.subaccount("own00001").balance == D("5")


@pytest.mark.parametrize(("start", "reason"), [(None, "Is required"), ("yesterday", "Malformed")])
def test_listing_transfers_needs_a_valid_start_date(start: str | None, reason: str) -> None:
    with pytest.raises(SimRefusal) as refused:
        account().list_transfers(start)
    assert refused.value.invalid_parameters == [{"name": "start_date", "reason": reason}]


# --- scenarios --------------------------------------------------------------------------------
def test_unknown_scenario_key_is_rejected_by_name() -> None:
    text = (
        '{"initial_balance": 1, "topup_amount": 1, "autoreload_threshold": 1, "topup_ammount": 2}'
    )
    with pytest.raises(ConfigError, match="unknown key 'topup_ammount'"):
        parse_scenario(text)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"topup_amount": 1, "autoreload_threshold": 1}', "missing key 'initial_balance'"),
        ("[]", "must be a JSON object"),
        ("{", "invalid JSON"),
        (
            '{"initial_balance": 1, "topup_amount": 1, "autoreload_threshold": 1,'
            ' "spend": [{"start": 0, "end": 1, "rate": 1, "rat": 2}]}',
            "unknown key 'rat'",
        ),
    ],
)
def test_bad_scenarios_are_rejected_clearly(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_scenario(text)


def test_scenario_money_is_read_exactly_and_guard_passes_through() -> None:
    scenario = parse_scenario(
        '{"initial_balance": 0.1, "topup_amount": 50, "autoreload_threshold": 10,'
        ' "guard": {"min_balance": 15, "anything": [1, 2]}}'
    )
    assert scenario.initial_balance == D("0.1")
    assert scenario.guard == {"min_balance": 15, "anything": [1, 2]}
    assert (scenario.autoreload_check_min_s, scenario.autoreload_check_max_s) == (300.0, 600.0)
    assert (scenario.topup_latency_s, scenario.balance_latency_s) == (2.0, 0.3)


def test_default_bursty_scenario_runs_dry_before_vonage_reloads() -> None:
    scenario = default_scenario()
    acc = SimAccount.from_scenario(scenario, api_key="k", api_secret="Secret123", trx=TRX)
    assert acc.balance == D("50")
    acc.advance_to(300.0)  # before the earliest possible auto-reload check
    assert acc.failed_events > 0
    assert acc.exhausted_seconds > 0
    assert isinstance(scenario, Scenario)
    assert {s.api_key for s in acc.subaccounts.values()} == {"sub00001", "sub00002"}
