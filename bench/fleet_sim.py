"""``python -m bench.fleet_sim``: what 1,000 spending subaccounts cost the simulator.

Generates the 1,000-subaccount 2-hour fleet trace (``topup_guard.fleet.tracegen``, seed 1; not
committed) and measures, on the in-process account a fleet backtest uses:
- ``advance_to`` in 5-s steps (the backtest's balance sampling) over the 2 hours;
- one guard cycle every 10 s: ``InProcessFleet.list_subaccounts`` (advance, bring every
  subaccount's demand up to date, build the ``SubaccountsOverview``);
for the fleet trace, for 1,000 subaccounts each billed a constant rate message by message (the
dearest demand), and for 1,000 subaccounts without demand (which should cost what none cost).
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from bench.report import table
from topup_guard.clock import VirtualClock
from topup_guard.config import DEMO_API_KEY, DEMO_API_SECRET, DEMO_TRX
from topup_guard.fleet import tracegen
from topup_guard.fleet.trace import FleetTrace, format_fleet_trace, parse_fleet_trace
from topup_guard.sim.account import SimAccount
from topup_guard.sim.fleet import InProcessFleet
from topup_guard.sim.scenario import Scenario

SUBACCOUNTS = 1000
DURATION_S = 7200.0
SAMPLE_S = 5.0
CYCLE_S = 10.0


@dataclass(frozen=True, slots=True)
class FleetCost:
    case: str
    events: int
    advance_us: float  # per 5-s step
    cycle_us: float  # per list call, every 10 s
    refused_eur: Decimal


def _scenario(raw: dict[str, Any]) -> Scenario:
    return Scenario.from_dict(json.loads(json.dumps(raw), parse_float=Decimal))


def _account(scenario: Scenario, trace: FleetTrace | None) -> SimAccount:
    return SimAccount.from_scenario(
        scenario, api_key=DEMO_API_KEY, api_secret=DEMO_API_SECRET, trx=DEMO_TRX, fleet_trace=trace
    )


def _measure(
    case: str, build: Callable[[], SimAccount], events: int, duration_s: float
) -> FleetCost:
    steps = int(duration_s / SAMPLE_S)
    account = build()
    started = time.perf_counter()
    for i in range(1, steps + 1):
        account.advance_to(i * SAMPLE_S)
    advance_s = time.perf_counter() - started
    account = build()
    clock = VirtualClock()
    fleet = InProcessFleet(account, clock)
    cycles = int(duration_s / CYCLE_S)

    async def loop() -> float:
        began = time.perf_counter()
        for _ in range(cycles):
            clock.advance(CYCLE_S)
            await fleet.list_subaccounts()
        return time.perf_counter() - began

    cycle_s = asyncio.run(loop())
    refused = sum(
        (f.refused_spend for f in account.subaccount_figures(duration_s).values()), Decimal(0)
    )
    return FleetCost(case, events, advance_s / steps * 1e6, cycle_s / cycles * 1e6, refused)


def measure(subaccounts: int = SUBACCOUNTS, duration_s: float = DURATION_S) -> list[FleetCost]:
    sample = tracegen.generate(subaccounts, duration_s, seed=1)
    text = format_fleet_trace(sample.trace)  # as a user's file would arrive
    trace = parse_fleet_trace(text.splitlines(), source="fleet-1000")
    events = sum(len(v) for v in trace.values())
    traced = _scenario(tracegen.scenario(sample))
    raw = tracegen.scenario(sample)
    for spec in raw["subaccounts"]:
        spec["spend_rate"] = "0.0075"
    rated = _scenario(raw)
    alone = _scenario(tracegen.scenario(tracegen.generate(0, duration_s)))
    n, d = f"{subaccounts:,}", duration_s
    return [
        _measure("primary alone", lambda: _account(alone, None), 0, d),
        _measure(f"{n} subaccounts without demand", lambda: _account(traced, None), 0, d),
        _measure(f"{n} subaccounts, fleet trace", lambda: _account(traced, trace), events, d),
        _measure(f"{n} subaccounts at 1 message/s each", lambda: _account(rated, None), 0, d),
    ]


def section(costs: list[FleetCost]) -> str:
    rows = [
        [
            c.case,
            f"{c.events:,}",
            f"{c.advance_us:,.1f}",
            f"{c.cycle_us:,.0f}",
            f"{c.refused_eur:.2f}",
        ]
        for c in costs
    ]
    header = ["account", "trace events", "advance_to per 5-s step (µs)",
              "list_subaccounts per 10-s cycle (µs)", "refused EUR (no guard)"]  # fmt: skip
    return (
        "## The simulator with 1,000 subaccounts (`python -m bench.fleet_sim`)\n\n"
        "Over 2 simulated hours, in-process (`InProcessFleet`), no guard "
        "funding anyone (so demand runs dry and is refused, the dearest path):\n\n"
        + table(header, rows)
    )


def main() -> int:
    print(section(measure()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
