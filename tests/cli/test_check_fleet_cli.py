"""``topup-guard check`` with a fleet file: the rules in force and the subaccounts they meet."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import pytest

from tests.cli.helpers import Run
from tests.simctl import inject_fault
from topup_guard.cli.check_fleet import listing_problem, subaccount_findings
from topup_guard.errors import ForbiddenError
from topup_guard.fleet.rules import FleetRules, Override, load_fleet_file
from topup_guard.model import Subaccount, SubaccountsOverview
from topup_guard.sim import RunningSimulator

RULES = """
[defaults]
floor = 5
[[account]]
name = "test-*"
exclude = true
[[account]]
key = "gone0000"
floor = 30
"""


@pytest.fixture
def fleet_env(
    account_env: RunningSimulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> RunningSimulator:
    path = tmp_path / "fleet.toml"
    path.write_text(RULES, encoding="utf-8")
    monkeypatch.setenv("TOPUP_GUARD_FLEET_FILE", str(path))
    account = account_env.account
    account.add_subaccount("cust0001", name="Acme", balance=Decimal(20))
    account.add_subaccount("cust0002", name="test-acme", balance=Decimal(20))
    account.add_subaccount("cust0003", name="Shared Co")  # shares the primary's balance
    return account_env


async def test_check_reports_the_rules_and_the_subaccounts_they_fund(
    cli: Run, fleet_env: RunningSimulator, tmp_path: Path
) -> None:
    code, out, err = await cli("check", "--json")
    assert code == 0, out + err
    checks = {(c["name"], c["level"], c["message"]) for c in json.loads(out)["checks"]}
    rules = load_fleet_file(tmp_path / "fleet.toml")
    assert (
        "fleet_file",
        "ok",
        f"{rules.source}: fingerprint {rules.fingerprint()}, 2 overrides; by default a floor of "
        "EUR 5, transfers of EUR 10",
    ) in checks
    assert (
        "subaccounts",
        "ok",
        "3: 1 to fund, 1 excluded by the rules, 1 sharing the primary's balance (nothing to fund)",
    ) in checks
    assert (
        "fleet_file",
        "warning",
        '[[account]] #2 (key = "gone0000") matches no subaccount: a typo, or a rule for an '
        "account that is gone?",
    ) in checks


async def test_check_fails_when_the_subaccounts_cannot_be_listed(
    cli: Run, fleet_env: RunningSimulator
) -> None:
    await inject_fault(fleet_env, endpoint="subaccounts", kind="error_500_before", count=5)
    code, out, _ = await cli("check", "--json")
    assert code == 1
    problems = [c for c in json.loads(out)["checks"] if c["level"] == "problem"]
    assert [c["name"] for c in problems] == ["subaccounts"]
    assert problems[0]["message"].startswith("cannot list them: ServerError")


def test_a_refused_listing_says_the_api_must_be_provisioned() -> None:
    refused = ForbiddenError("GET /accounts/KEY/subaccounts: 403 unprovisioned", status=403)
    finding = listing_problem(refused)
    assert finding.level == "problem"
    assert "the Subaccounts API must be provisioned for the primary account" in finding.message


def sub(key: str, name: str | None, *, shared: bool = False, suspended: bool = False) -> Subaccount:
    return Subaccount(key, name, None if shared else Decimal(10), None if shared else Decimal(0),
                      shared, suspended, None)  # fmt: skip


PRIMARY = sub("prim0000", None)


def test_a_primary_without_subaccounts_is_a_warning() -> None:
    (finding,) = subaccount_findings(SubaccountsOverview(PRIMARY, ()), FleetRules())
    assert (finding.level, finding.message) == ("warning", "the primary has none: nothing to fund")


def test_rules_that_exclude_every_subaccount_are_a_warning_and_suspended_ones_are_named() -> None:
    subs = tuple(sub(f"k{i}", f"n{i}", suspended=i < 7) for i in range(8))
    everything = FleetRules(overrides=(Override(key="*", excluded=True),))
    (counted,) = subaccount_findings(SubaccountsOverview(PRIMARY, subs), everything)
    assert counted.level == "warning"
    found = subaccount_findings(SubaccountsOverview(PRIMARY, subs), FleetRules())
    assert [f.message for f in found] == [
        "8: 8 to fund, 0 excluded by the rules, 0 sharing the primary's balance (nothing to fund)",
        "suspended: k0, k1, k2, k3, k4 and 2 more",
    ]
