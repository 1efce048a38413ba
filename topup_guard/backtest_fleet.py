"""Replay a fleet trace (``t,account,amount``): the fleet guard against Vonage's auto-reload on
the primary alone, per account and in total, on a virtual clock.

The fleet guard is the real ``FleetGuard`` — the real primary engine, the real ``SafeTransfer``
and ledgers, the real policy — over ``InProcessFleet`` (the simulator's account, no sockets).
The baseline is what a platform has without it: Vonage's auto-reload keeps the primary topped up,
and nobody moves money to the subaccounts, which spend their opening balances and then refuse.
"""

from __future__ import annotations

import asyncio
import math
from collections import Counter
from dataclasses import asdict, dataclass
from decimal import Decimal
from typing import Any, cast

from topup_guard.backtest import SampledClock, _SilentTracer
from topup_guard.config import DEMO_API_KEY, DEMO_API_SECRET, DEMO_TRX, Settings
from topup_guard.coordination import SoleGuard
from topup_guard.engine import Engine
from topup_guard.events import Event
from topup_guard.fleet.guard import FleetGuard
from topup_guard.fleet.rules import FleetRules
from topup_guard.fleet.trace import FleetTrace
from topup_guard.fleet.transfer import SafeTransfer
from topup_guard.fleet.transfer_ledger import SqliteTransferLedger
from topup_guard.ledger.sqlite import SqliteLedger
from topup_guard.policy.decide import PolicyParams
from topup_guard.sim.account import SimAccount
from topup_guard.sim.fleet import InProcessFleet
from topup_guard.sim.scenario import Scenario

POLICIES = ("fleet_guard", "autoreload_only")
# The simulator applies a transfer before it answers; a listing this soon after is evidence.
BACKTEST_VERIFY_AFTER_S = 1.0


@dataclass(frozen=True, slots=True)
class AccountResult:
    refused_spend: Decimal
    refused_events: int
    exhausted_seconds: float
    transfers: int
    transferred: Decimal


@dataclass(frozen=True, slots=True)
class FleetResult:
    accounts: dict[str, AccountResult]
    refused_spend: Decimal  # every subaccount's refused demand
    primary_failed_spend: Decimal
    topups: int
    autoreloads: int
    transfers: int
    transferred: Decimal  # EUR moved to subaccounts
    api_calls: int
    list_calls: int
    api_calls_per_hour: float
    mean_primary_balance: Decimal

    @property
    def accounts_refused(self) -> int:
        return sum(1 for a in self.accounts.values() if a.refused_spend > 0)


@dataclass(frozen=True, slots=True)
class FleetReport:
    policies: dict[str, FleetResult]
    duration_s: float
    subaccounts: int
    total_spend: Decimal
    primary_spend: Decimal  # the primary's own demand in the trace
    opening_balance: Decimal
    topup_amount: Decimal

    def topups_needed(self, policy: str = "fleet_guard") -> int:
        """The fewest top-ups that pay for what left the primary under ``policy``: its own
        spend and the transfers it made, beyond its opening balance."""
        r = self.policies[policy]
        out = self.primary_spend - r.primary_failed_spend + r.transferred - self.opening_balance
        return 0 if out <= 0 else math.ceil(out / self.topup_amount)

    def to_json(self) -> dict[str, Any]:
        def plain(value: object) -> object:
            if isinstance(value, Decimal):
                return str(value)
            if isinstance(value, dict):
                return {k: plain(v) for k, v in value.items()}
            return value

        return {
            "duration_s": self.duration_s,
            "subaccounts": self.subaccounts,
            "total_spend": str(self.total_spend),
            "primary_topups_needed": self.topups_needed(),
            "policies": {
                name: {
                    **cast("dict[str, Any]", plain(asdict(r))),
                    "accounts_refused": r.accounts_refused,
                }
                for name, r in self.policies.items()
            },
        }


class _Discard:
    """Events go nowhere: a replay of hours would keep every cycle's 1,000 balances."""

    def emit(self, event: Event) -> None:
        return None


def _account(scenario: Scenario, trace: FleetTrace) -> SimAccount:
    return SimAccount.from_scenario(
        scenario, api_key=DEMO_API_KEY, api_secret=DEMO_API_SECRET, trx=DEMO_TRX, fleet_trace=trace
    )


def _result(
    account: SimAccount, clock: SampledClock, calls: Counter[str], end: float
) -> FleetResult:
    figures = account.subaccount_figures(end)
    moved: Counter[str] = Counter()
    amounts: dict[str, Decimal] = {}
    for tr in account.transfers:
        moved[tr.to_key] += 1
        amounts[tr.to_key] = amounts.get(tr.to_key, Decimal(0)) + tr.amount
    accounts = {
        key: AccountResult(
            refused_spend=f.refused_spend,
            refused_events=f.refused_events,
            exhausted_seconds=round(f.exhausted_seconds, 1),
            transfers=moved[key],
            transferred=amounts.get(key, Decimal(0)),
        )
        for key, f in sorted(figures.items())
    }
    total = sum(calls.values())
    return FleetResult(
        accounts=accounts,
        refused_spend=sum((a.refused_spend for a in accounts.values()), Decimal(0)),
        primary_failed_spend=account.failed_spend,
        topups=len(account.topups),
        autoreloads=len(account.autoreloads),
        transfers=len(account.transfers),
        transferred=sum((a.transferred for a in accounts.values()), Decimal(0)),
        api_calls=total,
        list_calls=calls["subaccounts"],
        api_calls_per_hour=round(total / max(end / 3600.0, 1e-9), 1),
        mean_primary_balance=clock.mean_balance().quantize(Decimal("0.01")),
    )


async def run_fleet_guard(
    scenario: Scenario, trace: FleetTrace, settings: Settings, rules: FleetRules, end: float
) -> FleetResult:
    account = _account(scenario, trace)
    clock = SampledClock(account)
    # The credit delay is the account's own (from_scenario); the API adds only answer times.
    api = InProcessFleet(account, clock, balance_latency_s=scenario.balance_latency_s,
                         api_latency_s=scenario.balance_latency_s)  # fmt: skip
    ledger = SqliteLedger(":memory:", account=DEMO_API_KEY)
    transfer_ledger = SqliteTransferLedger(":memory:")
    sink = _Discard()
    primary_sink = FleetGuard.primary_sink(sink)
    tracer = _SilentTracer()
    primary = Engine(api=api, ledger=ledger, clock=clock, settings=settings, sink=primary_sink,
                     tracer=tracer, account_label=DEMO_API_KEY)  # fmt: skip
    coordinator = SoleGuard()
    transfers = SafeTransfer(api, transfer_ledger, coordinator, clock, primary_key=DEMO_API_KEY,
                             tracer=tracer, verify_after_s=BACKTEST_VERIFY_AFTER_S)  # fmt: skip
    fleet = FleetGuard(
        api=api,
        primary=primary,
        primary_sink=primary_sink,
        transfers=transfers,
        ledger=transfer_ledger,
        rules=rules,
        clock=clock,
        sink=sink,
        params=PolicyParams.from_settings(settings),
        windows=(settings.rate_window_short, settings.rate_window_long),
        coordinator=coordinator,
        tracer=tracer,
    )
    await fleet.run(asyncio.Event(), until=end)
    clock.advance(max(0.0, end - clock.now()))
    account.advance_to(end)
    await transfer_ledger.close()
    await ledger.close()
    return _result(account, clock, api.calls, end)


def run_autoreload_only(scenario: Scenario, trace: FleetTrace, end: float) -> FleetResult:
    account = _account(scenario, trace)
    clock = SampledClock(account)
    clock.advance(end)
    account.advance_to(end)
    return _result(account, clock, Counter(), end)


def backtest_fleet(
    scenario: Scenario, trace: FleetTrace, settings: Settings, rules: FleetRules
) -> FleetReport:
    end = max((events[-1][0] for events in trace.values() if events), default=0.0) + 1.0
    results = {
        "fleet_guard": asyncio.run(run_fleet_guard(scenario, trace, settings, rules, end)),
        "autoreload_only": run_autoreload_only(scenario, trace, end),
    }
    return FleetReport(
        policies=results,
        duration_s=end,
        subaccounts=len(scenario.subaccounts),
        total_spend=sum((a for events in trace.values() for _, a in events), Decimal(0)),
        primary_spend=sum((a for _, a in trace.get("primary", ())), Decimal(0)),
        opening_balance=scenario.initial_balance,
        topup_amount=scenario.topup_amount,
    )


_ROWS: list[tuple[str, Any]] = [
    ("refused demand, all subaccounts (EUR)", lambda r: f"{r.refused_spend:.2f}"),
    ("subaccounts that refused demand", lambda r: str(r.accounts_refused)),
    ("primary's own refused demand (EUR)", lambda r: f"{r.primary_failed_spend:.2f}"),
    ("transfers", lambda r: str(r.transfers)),
    ("EUR transferred", lambda r: f"{r.transferred:.2f}"),
    ("top-ups of the primary", lambda r: str(r.topups)),
    ("auto-reloads of the primary", lambda r: str(r.autoreloads)),
    ("API calls", lambda r: str(r.api_calls)),
    ("list calls", lambda r: str(r.list_calls)),
    ("API calls per hour", lambda r: f"{r.api_calls_per_hour:.0f}"),
    ("mean primary balance (EUR)", lambda r: f"{r.mean_primary_balance:.2f}"),
]


def render_fleet(report: FleetReport, *, worst: int = 10) -> str:
    """The totals side by side, then the subaccounts that refused most under either policy."""
    head = f"{'':40}" + "".join(f"{p:>18}" for p in POLICIES)
    lines = [
        f"fleet of {report.subaccounts} subaccounts, {report.duration_s / 3600:.1f} h, "
        f"{report.total_spend:.2f} EUR of demand; the fleet guard's transfers and the primary's "
        f"own spend needed at least {report.topups_needed()} top-ups of "
        f"{report.topup_amount:.2f} EUR",
        head,
    ]
    for label, cell in _ROWS:
        lines.append(f"{label:40}" + "".join(f"{cell(report.policies[p]):>18}" for p in POLICIES))
    guard, alone = report.policies["fleet_guard"], report.policies["autoreload_only"]
    ranked = sorted(
        alone.accounts,
        key=lambda k: (guard.accounts[k].refused_spend, alone.accounts[k].refused_spend),
        reverse=True,
    )[:worst]
    lines += ["", f"{'subaccount (refused EUR)':40}" + "".join(f"{p:>18}" for p in POLICIES)]
    for key in ranked:
        g, a = guard.accounts[key], alone.accounts[key]
        lines.append(f"{key:40}{g.refused_spend:>18.2f}{a.refused_spend:>18.2f}")
    return "\n".join(lines)
