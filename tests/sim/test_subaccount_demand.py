"""``SimAccount``'s subaccount demand as a model: lazy advancing is exact, the primary untouched."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from topup_guard.fleet import tracegen
from topup_guard.sim.account import SimAccount
from topup_guard.sim.scenario import Scenario

D = Decimal


Trace = dict[str, list[tuple[float, Decimal]]]


def fleet_raw(n: int = 20) -> tuple[dict[str, Any], Trace]:
    sample = tracegen.generate(n, 1800, seed=3)
    raw = tracegen.scenario(sample)
    # Add rate and profile demand beside the traces, on own and shared subaccounts alike.
    raw["subaccounts"][0]["spend_rate"] = "0.02"
    raw["subaccounts"][1]["bursts"] = [{"at": 100, "duration": 60, "rate": "0.5"}]
    raw["subaccounts"][3]["spend"] = [{"start": 0, "end": 900, "rate": "0.004"}]
    raw["subaccounts"].append({"api_key": "shared99", "spend_rate": "0.01"})
    return raw, sample.trace


def fleet_scenario(n: int = 20) -> tuple[Scenario, Trace]:
    raw, trace = fleet_raw(n)
    return Scenario.from_dict(raw), trace


def build(scenario: Scenario, trace: dict[str, list[tuple[float, Decimal]]]) -> SimAccount:
    return SimAccount.from_scenario(
        scenario, api_key="k", api_secret="s", trx="x", fleet_trace=trace
    )


def snapshot(account: SimAccount, t: float) -> dict[str, Any]:
    figures = account.subaccount_figures(t)
    return {
        "primary": (account.balance, account.served_spend, account.failed_spend),
        "autoreloads": account.autoreloads,
        "balances": {k: s.balance for k, s in account.subaccounts.items()},
        "figures": figures,
    }


def test_advancing_in_one_jump_or_in_one_second_steps_gives_the_same_fleet() -> None:
    scenario, trace = fleet_scenario()
    jump, steps = build(scenario, trace), build(scenario, trace)
    for t in range(1, 1801):
        steps.advance_to(float(t))
        if t % 7 == 0:
            _ = steps.subaccounts  # looking at the subaccounts advances their own demand
    jump.advance_to(1800.0)
    assert snapshot(jump, 1800.0) == snapshot(steps, 1800.0)
    assert any(f.refused_events for f in snapshot(jump, 1800.0)["figures"].values())


def test_own_balance_demand_leaves_the_primary_exactly_as_without_it() -> None:
    raw, trace = fleet_raw()
    raw["subaccounts"] = [s for s in raw["subaccounts"] if s.get("balance") is not None]
    own = {s["api_key"] for s in raw["subaccounts"]} | {"primary"}
    with_fleet = build(Scenario.from_dict(raw), {k: v for k, v in trace.items() if k in own})
    alone = build(Scenario.from_dict(raw | {"subaccounts": []}), {"primary": trace["primary"]})
    for t in range(10, 1801, 10):
        alone.advance_to(float(t))
        with_fleet.advance_to(float(t))
        _ = with_fleet.subaccounts
        assert (alone.balance, alone.autoreloads) == (with_fleet.balance, with_fleet.autoreloads)
    assert alone.served_events == with_fleet.served_events > 0
    assert sum(f.served_events for f in with_fleet.subaccount_figures(1800.0).values()) > 0


def test_a_shared_subaccount_draws_the_primary_down_and_auto_reload_answers_it() -> None:
    scenario = Scenario.from_dict(
        {
            "initial_balance": 30,
            "topup_amount": 50,
            "autoreload_threshold": 20,
            "subaccounts": [{"api_key": "shared01", "spend_rate": "0.05"}],
        }
    )
    account = SimAccount.from_scenario(scenario, api_key="k", api_secret="s", trx="x")
    account.advance_to(3600.0)  # 180 EUR of demand against 30 EUR and Vonage's slow reloads
    assert account.autoreloads  # the primary's own auto-reload saw the subaccount's spending
    shared = account.subaccount_figures(3600.0)["shared01"]
    assert shared.served_spend + shared.refused_spend == pytest.approx(D(180), abs=D("0.01"))
    assert shared.served_spend == D(30) + 50 * len(account.autoreloads) - account.balance
    assert account.served_spend == account.failed_spend == 0  # the primary's own: none


def test_a_fleet_trace_naming_an_unknown_subaccount_is_refused() -> None:
    scenario, _ = fleet_scenario(5)
    with pytest.raises(ValueError, match="no subaccount 'sub09999'"):
        build(scenario, {"sub09999": [(1.0, D(1))]})


def test_a_subaccount_without_demand_costs_nothing_to_advance() -> None:
    scenario = Scenario.from_dict(
        {
            "initial_balance": 30,
            "topup_amount": 50,
            "autoreload_threshold": 20,
            "subaccounts": [{"api_key": f"s{i:07d}", "balance": 5} for i in range(1000)],
        }
    )
    account = SimAccount.from_scenario(scenario, api_key="k", api_secret="s", trx="x")
    assert account.subaccount_figures(10.0) == {}  # no demand record at all
    account.set_subaccount_spend_rate("s0000007", D("0.0075"), 10.0)
    account.advance_to(20.0)
    assert list(account.subaccount_figures(20.0)) == ["s0000007"]
    assert account.subaccounts["s0000007"].balance == D(5) - 10 * D("0.0075")
