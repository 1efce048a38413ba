"""balance, top-up, settings, subaccounts and transfer, run for real against the simulator."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest

from tests.cli.helpers import FakeTty, Run
from tests.simctl import sim_post, sim_state
from topup_guard.sim import RunningSimulator

pytestmark = pytest.mark.usefixtures("account_env")


# --- balance ------------------------------------------------------------------------------


async def test_balance_shows_full_precision_rounded_and_auto_reload(
    cli: Run, account_env: RunningSimulator
) -> None:
    await sim_post(account_env, "/_sim/control", {"balance": "29.18202293"})
    code, out, err = await cli("balance")
    assert code == 0, err
    assert "EUR 29.18202293" in out
    assert "EUR 29.18" in out
    assert "Auto-reload: on" in out


async def test_balance_json_gives_exact_decimal_strings(
    cli: Run, account_env: RunningSimulator
) -> None:
    await sim_post(account_env, "/_sim/control", {"balance": "29.18502293", "auto_reload": False})
    code, out, _ = await cli("balance", "--json")
    assert code == 0
    data = json.loads(out)
    assert Decimal(data["balance_eur"]) == Decimal("29.18502293")
    assert data["balance_eur_rounded"] == "29.19"
    assert data["auto_reload"] is False


async def test_balance_with_a_wrong_secret_is_one_line_and_exit_1(
    cli: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VONAGE_API_SECRET", "WrongSecret9")
    code, out, err = await cli("balance")
    assert code == 1
    assert out == ""
    assert "AuthenticationError" in err
    assert len(err.strip().splitlines()) == 1
    assert "Traceback" not in err
    assert "WrongSecret9" not in err


# --- top-up -------------------------------------------------------------------------------


async def test_top_up_refuses_without_yes_when_not_on_a_terminal(
    cli: Run, account_env: RunningSimulator
) -> None:
    code, out, err = await cli("top-up")
    assert code == 2
    assert out == ""
    assert "--yes" in err
    state = await sim_state(account_env)
    assert state["topups"] == []
    assert "get-balance" not in state["calls"]  # refused before anything was even read


async def test_top_up_with_yes_charges_once_and_shows_balance_before_and_after(
    cli: Run, account_env: RunningSimulator
) -> None:
    code, out, err = await cli("top-up", "--yes")
    assert code == 0, err
    assert "Topped up EUR 50.00: EUR 100" in out
    assert "-> EUR 150" in out
    assert len((await sim_state(account_env))["topups"]) == 1


async def test_top_up_json_reports_both_balances_and_the_credit(cli: Run) -> None:
    code, out, _ = await cli("top-up", "--yes", "--json")
    assert code == 0
    data = json.loads(out)
    assert data["outcome"] == "succeeded"
    assert data["answer"] == "confirmed"
    assert Decimal(data["balance_before"]) == 100
    assert Decimal(data["balance_after"]) == 150
    assert Decimal(data["credited"]) == 50  # from the balance step, not after - before


async def test_top_up_on_a_terminal_asks_showing_the_balance_and_charges_on_yes(
    cli: Run, account_env: RunningSimulator
) -> None:
    code, _, err = await cli("top-up", stdin=FakeTty("y\n"))
    assert code == 0
    assert "The balance is EUR 100" in err
    assert "stored payment method" in err
    assert len((await sim_state(account_env))["topups"]) == 1


async def test_top_up_on_a_terminal_charges_nothing_when_the_answer_is_no(
    cli: Run, account_env: RunningSimulator
) -> None:
    code, _, err = await cli("top-up", stdin=FakeTty("\n"))
    assert code == 1
    assert "Cancelled" in err
    assert (await sim_state(account_env))["topups"] == []


async def test_top_up_after_an_ambiguous_5xx_is_verified_by_balance_and_not_resent(
    cli: Run, account_env: RunningSimulator
) -> None:
    await sim_post(account_env, "/_sim/faults", {"endpoint": "top-up", "kind": "error_500_after"})
    code, out, err = await cli("top-up", "--yes", "--json")
    assert code == 0, err
    data = json.loads(out)
    assert (data["answer"], data["outcome"]) == ("ambiguous", "succeeded")
    assert "balance step" in data["evidence"]
    state = await sim_state(account_env)
    assert len(state["topups"]) == 1  # applied by Vonage, and sent exactly once
    assert sum(state["calls"]["top-up"].values()) == 1


async def test_top_up_after_a_reset_not_applied_ends_unconfirmed_and_tells_what_to_do(
    cli: Run, account_env: RunningSimulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TOPUP_GUARD_SETTLE_WINDOW", "3")
    await sim_post(account_env, "/_sim/faults", {"endpoint": "top-up", "kind": "reset_before"})
    code, _, err = await cli("top-up", "--yes")
    assert code == 3
    assert "unconfirmed" in err
    assert "Vonage dashboard" in err
    assert (await sim_state(account_env))["topups"] == []


async def test_top_up_is_not_sent_when_auto_reload_is_off(
    cli: Run, account_env: RunningSimulator
) -> None:
    await sim_post(account_env, "/_sim/control", {"auto_reload": False})
    code, _, err = await cli("top-up", "--yes")
    assert code == 1
    assert "auto-reload is off" in err
    assert "top-up" not in (await sim_state(account_env))["calls"]


async def test_top_up_refused_by_vonage_says_nothing_was_charged(
    cli: Run, account_env: RunningSimulator
) -> None:
    await sim_post(account_env, "/_sim/control", {"fail_payments": 1})
    code, _, err = await cli("top-up", "--yes")
    assert code == 1
    assert "nothing was charged" in err
    assert (await sim_state(account_env))["topups"] == []


async def test_top_up_without_trx_is_a_config_error_naming_the_variable(
    cli: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TOPUP_GUARD_TRX")
    code, _, err = await cli("top-up", "--yes")
    assert code == 2
    assert "TOPUP_GUARD_TRX" in err


# --- settings -----------------------------------------------------------------------------


async def test_settings_show_text_and_json(cli: Run) -> None:
    code, out, _ = await cli("settings", "show")
    assert code == 0
    assert "max_calls_per_second" in out
    code, out, _ = await cli("settings", "show", "--json")
    assert json.loads(out)["max_calls_per_second"] == 30


async def test_settings_set_changes_then_an_empty_string_clears(
    cli: Run, account_env: RunningSimulator
) -> None:
    url = "https://example.com/inbound"
    code, out, err = await cli(
        "settings", "set", "--mo-callback-url", url, "--http-forward-method", "POST_JSON"
    )
    assert code == 0, err
    assert url in out
    assert account_env.account.mo_callback_url == url
    assert account_env.account.http_forward_method == "POST_JSON"
    code, out, _ = await cli("settings", "set", "--mo-callback-url", "", "--json")
    assert code == 0
    assert json.loads(out)["mo_callback_url"] in (None, "")
    assert account_env.account.mo_callback_url == ""


@pytest.mark.parametrize(
    "argv",
    [
        ("settings", "set"),
        ("settings", "set", "--dr-callback-url", "not a url"),
        ("settings", "set", "--mo-callback-url", "ftp://example.com/x"),
    ],
)
async def test_settings_set_refuses_nothing_to_do_and_bad_urls_before_calling(
    cli: Run, account_env: RunningSimulator, argv: tuple[str, ...]
) -> None:
    code, _, err = await cli(*argv)
    assert code == 2
    assert err.startswith("topup-guard: ")
    assert "settings" not in (await sim_state(account_env))["calls"]


# --- subaccounts and transfers ------------------------------------------------------------


@pytest.fixture
def with_subaccounts(account_env: RunningSimulator) -> RunningSimulator:
    account_env.account.add_subaccount("sub00001", name="Marketing", balance=Decimal("5.5"))
    account_env.account.add_subaccount("sub00002", name="Shared")
    return account_env


async def test_subaccounts_lists_balances_and_marks_shared_ones(
    cli: Run, with_subaccounts: RunningSimulator
) -> None:
    code, out, err = await cli("subaccounts")
    assert code == 0, err
    lines = out.splitlines()
    assert any("sub00001" in line and "EUR 5.5" in line for line in lines)
    assert any("sub00002" in line and "shares the primary balance" in line for line in lines)
    code, out, _ = await cli("subaccounts", "--json")
    data = json.loads(out)
    subs = {s["api_key"]: s for s in data["subaccounts"]}
    assert subs["sub00002"]["shared_balance"] is True
    assert Decimal(subs["sub00001"]["balance_eur"]) == Decimal("5.5")


async def test_transfer_with_yes_moves_the_exact_amount(
    cli: Run, with_subaccounts: RunningSimulator
) -> None:
    code, out, err = await cli(
        "transfer", "--from", "demo1234", "--to", "sub00001", "--amount", "10.25", "--yes"
    )
    assert code == 0, err
    assert "EUR 10.25" in out
    assert with_subaccounts.account.subaccounts["sub00001"].balance == Decimal("15.75")


async def test_transfer_refuses_without_yes_when_not_on_a_terminal(
    cli: Run, with_subaccounts: RunningSimulator
) -> None:
    code, _, err = await cli("transfer", "--from", "demo1234", "--to", "sub00001", "--amount", "1")
    assert code == 2
    assert "--yes" in err
    assert with_subaccounts.account.transfers == []


@pytest.mark.parametrize("amount", ["0", "-3", "ten", "NaN", "Infinity"])
async def test_transfer_refuses_an_amount_that_is_not_positive_money(
    cli: Run, with_subaccounts: RunningSimulator, amount: str
) -> None:
    code, _, err = await cli(
        "transfer", "--from", "demo1234", "--to", "sub00001", f"--amount={amount}", "--yes"
    )
    assert code == 2
    assert "--amount" in err
    assert with_subaccounts.account.transfers == []


async def test_transfer_after_an_ambiguous_answer_says_outcome_unknown(
    cli: Run, with_subaccounts: RunningSimulator
) -> None:
    fault = {"endpoint": "balance-transfers", "kind": "error_500_after"}
    await sim_post(with_subaccounts, "/_sim/faults", fault)
    code, _, err = await cli(
        "transfer", "--from", "demo1234", "--to", "sub00001", "--amount", "1", "--yes"
    )
    assert code == 1
    assert "outcome unknown" in err
    assert len(with_subaccounts.account.transfers) == 1  # applied once, never resent
