"""``topup-guard check`` with a fleet file: the rules in force and the subaccounts they meet.

``load_settings`` has already refused a broken file; what is left to check needs the account:
whether the Subaccounts API answers (Vonage provisions it per account) and whether the rules fit
the subaccounts there are. An override that matches no subaccount is most often a mistyped key,
which the file alone cannot show.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from topup_guard.cli._common import client_for
from topup_guard.cli.check import Finding
from topup_guard.errors import ForbiddenError, VonageError
from topup_guard.fleet.rules import FleetFileError, FleetRules, load_fleet_file
from topup_guard.model import SubaccountsOverview

if TYPE_CHECKING:
    from topup_guard.config import Settings

_LIST_AT_MOST = 5  # keys named in one finding; the rest are counted


async def fleet_findings(settings: Settings) -> list[Finding]:
    """Nothing without a fleet file; else the rules and what they make of the subaccounts."""
    if settings.fleet_file is None:
        return []
    try:
        rules = load_fleet_file(settings.fleet_file)
    except FleetFileError as exc:  # changed since the settings were loaded
        return [Finding("fleet_file", "problem", line) for line in exc.problems]
    found = [rules_finding(rules)]
    try:
        async with client_for(settings) as client:
            overview = await client.list_subaccounts()
    except VonageError as exc:
        return [*found, listing_problem(exc)]
    return found + subaccount_findings(overview, rules)


def rules_finding(rules: FleetRules) -> Finding:
    d = rules.defaults
    return Finding(
        "fleet_file",
        "ok",
        f"{rules.source}: fingerprint {rules.fingerprint()}, {len(rules.overrides)} overrides; "
        f"by default a floor of EUR {d.floor}, transfers of EUR {d.transfer_amount}",
    )


def listing_problem(exc: VonageError) -> Finding:
    if isinstance(exc, ForbiddenError):
        what = (
            f"Vonage refused to list the subaccounts ({exc}): the Subaccounts API must be "
            "provisioned for the primary account (ask your Vonage account manager)"
        )
    else:
        what = f"cannot list them: {type(exc).__name__}: {exc}"
    return Finding("subaccounts", "problem", what)


def subaccount_findings(overview: SubaccountsOverview, rules: FleetRules) -> list[Finding]:
    """Pure: how many subaccounts the rules fund, exclude and skip, and which rules meet none."""
    subs = overview.subaccounts
    if not subs:
        return [Finding("subaccounts", "warning", "the primary has none: nothing to fund")]
    own = [s for s in subs if not s.use_primary_account_balance]
    excluded = [s for s in own if rules.for_account(s.api_key, s.name).excluded]
    funded = [s for s in own if s not in excluded]
    found = [
        Finding(
            "subaccounts",
            "ok" if funded else "warning",
            f"{len(subs)}: {len(funded)} to fund, {len(excluded)} excluded by the rules, "
            f"{len(subs) - len(own)} sharing the primary's balance (nothing to fund)",
        )
    ]
    if suspended := [s.api_key for s in funded if s.suspended]:
        found.append(Finding("subaccounts", "warning", f"suspended: {_keys(suspended)}"))
    for override in rules.overrides:
        if not any(override.matches(s.api_key, s.name) for s in subs):
            pattern = " ".join(
                f'{k} = "{v}"' for k, v in (("key", override.key), ("name", override.name)) if v
            )
            found.append(
                Finding(
                    "fleet_file",
                    "warning",
                    f"{override.where} ({pattern}) matches no subaccount: a typo, or a rule for "
                    "an account that is gone?",
                )
            )
    return found


def _keys(keys: list[str]) -> str:
    shown = ", ".join(keys[:_LIST_AT_MOST])
    more = len(keys) - _LIST_AT_MOST
    return f"{shown} and {more} more" if more > 0 else shown
