"""What the backtest table does not say by itself: what bound each policy, and whether it could win.

Printed under the table by ``topup-guard backtest`` (and in the HTML report): the blockers the
guard's decisions met (caps, breaker, auto-reload off, ...) with the setting that sets each one,
API calls per hour over the budget, and the feasibility bound the README promises — the most
the trace spends while the guard is blind (``poll_min + topup_latency``) against the buffer it
keeps (``min_balance`` + one top-up).
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal

from topup_guard.backtest import BacktestReport
from topup_guard.config import Settings
from topup_guard.replay import PolicyRun, Trace, peak_spend
from topup_guard.sim.scenario import Scenario

CALLS_PER_HOUR_BUDGET = 180.0
"""The README's goal: at most half the calls of a fixed 10-second poll (360/h)."""

_SETTING_OF = {
    "caps": "max_topups_per_hour / max_topups_per_day / max_daily_amount",
    "breaker": "breaker_threshold / breaker_cooldown",
    "auto_reload_off": "the account's auto-reload",
    "dry_run": "dry_run",
    "in_flight": "settle_window (a top-up being verified)",
    "not_leader": "the lease",
}


def notes(
    report: BacktestReport,
    runs: Mapping[str, PolicyRun],
    scenario: Scenario,
    trace: Trace,
    settings: Settings,
) -> list[str]:
    out = [_bound_guard(report, runs["guard"])]
    for name, run in runs.items():
        if name != "guard" and run.failed_spend > 0:
            out.append(f"{name}: bound by {_baseline(name, scenario)}")
    out += over_budget(report)
    out.append(feasibility(trace, settings, scenario))
    return out


def _baseline(name: str, s: Scenario) -> str:
    if name == "autoreload_only":
        return (
            f"Vonage's auto-reload checking only every {s.autoreload_check_min_s:g}-"
            f"{s.autoreload_check_max_s:g} s"
        )
    return "its fixed 60-s poll and one top-up per poll below the threshold"


def _bound_guard(report: BacktestReport, run: PolicyRun) -> str:
    g = report.policies["guard"]
    poller = report.policies["threshold_poller"]
    lost = g.failed_spend > poller.failed_spend
    verdict = (
        f"the guard LOST to the naive poller ({g.failed_spend:.2f} vs {poller.failed_spend:.2f} "
        "EUR refused)"
        if lost
        else f"guard: {g.failed_spend:.2f} EUR refused"
    )
    if not run.blocked:
        return f"{verdict}; nothing blocked its decisions"
    parts = [
        f"{blocker} in {n} polls (set by {_SETTING_OF.get(blocker, blocker)})"
        for blocker, n in run.blocked.most_common()
    ]
    return f"{verdict}; its top-ups were blocked by {', '.join(parts)}"


def over_budget(report: BacktestReport) -> list[str]:
    return [
        f"OVER BUDGET: {name} made {r.api_calls_per_hour:.0f} API calls/h, more than "
        f"{CALLS_PER_HOUR_BUDGET:.0f}/h (half a fixed 10-s poll); they count against the "
        "account's rate limit"
        for name, r in report.policies.items()
        if r.api_calls_per_hour > CALLS_PER_HOUR_BUDGET
    ]


def feasibility(trace: Trace, settings: Settings, scenario: Scenario) -> str:
    window = round(settings.poll_min + settings.topup_latency, 3)
    peak = peak_spend(trace, window)
    buffer = settings.min_balance + (settings.topup_amount or scenario.topup_amount)
    rate = peak / Decimal(str(window))
    verdict = (
        "a top-up decided at a poll lands in time"
        if peak < buffer
        else "INFEASIBLE: the trace drains the buffer faster than any top-up can land"
    )
    return (
        f"feasibility: the most spent in any {window:g} s (poll_min + latency) is "
        f"{peak:.2f} EUR (~{rate:.3f} EUR/s) against a buffer of {buffer:.2f} EUR "
        f"(min_balance + one top-up): {verdict}"
    )
