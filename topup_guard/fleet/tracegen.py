"""Deterministic fleet traces: a primary and N subaccounts with bursty, steady and idle spend.

``python -m topup_guard.fleet.tracegen --subaccounts 50 --hours 2 --out fleet-50.csv
--scenario-out fleet-50.json`` writes a fleet trace (``fleet/trace.py``) and a scenario whose
``subaccounts`` match it and whose ``fleet_trace`` names it (``topup-guard simulate --scenario
fleet-50.json`` replays it). The same arguments always give the same bytes: every subaccount draws
from its own seeded stream, so adding subaccounts never changes the earlier ones.

The mix, by position (i mod 10): 0-2 campaigns (a trickle plus 1-3 sends of 5-20 minutes at
0.05-0.3 EUR/s), 3-7 steady (0.0005-0.005 EUR/s with +-30 % noise), 8-9 idle (an event now and
then, or none). Every 7th subaccount is postpaid (credit_limit -10) and every 25th shares the
primary's balance. Amounts are whole messages at 0.0075 EUR; coarse events (one per ``step_s``)
keep the files small.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

from topup_guard.fleet.trace import PRIMARY, FleetTrace, format_fleet_trace

PRICE = Decimal("0.0075")
CAMPAIGN_STEP_S = 10.0


@dataclass(frozen=True, slots=True)
class FleetSample:
    """A generated fleet: the trace and the subaccounts a scenario needs for it."""

    trace: FleetTrace
    subaccounts: tuple[dict[str, Any], ...]

    def kinds(self) -> dict[str, str]:
        """Subaccount key -> ``campaign`` / ``steady`` / ``idle``."""
        return {s["api_key"]: str(s["name"]).split("-", 1)[0] for s in self.subaccounts}


def kind_of(index: int) -> str:
    slot = index % 10
    return "campaign" if slot < 3 else "steady" if slot < 8 else "idle"


def generate(
    subaccounts: int, duration_s: float, *, seed: int = 1, step_s: float = 30.0
) -> FleetSample:
    """``subaccounts`` accounts over ``duration_s`` seconds; keys ``sub00001``... in order."""
    if subaccounts < 0 or duration_s <= 0 or step_s <= 0:
        raise ValueError("need subaccounts >= 0, duration_s > 0 and step_s > 0")
    primary = random.Random(f"{seed}-primary")  # noqa: S311 - a repeatable trace, not crypto
    trace: FleetTrace = {PRIMARY: _steady(primary, duration_s, step_s)}
    subs: list[dict[str, Any]] = []
    for i in range(1, subaccounts + 1):
        rng = random.Random(f"{seed}-{i}")  # noqa: S311 - repeatable, not crypto
        key, kind = f"sub{i:05d}", kind_of(i - 1)
        if kind == "campaign":
            events = _campaign(rng, duration_s, step_s)
        elif kind == "steady":
            events = _steady(rng, duration_s, step_s)
        else:
            events = _idle(rng, duration_s, step_s)
        shared = i % 25 == 0
        spec: dict[str, Any] = {"api_key": key, "name": f"{kind}-{i:04d}"}
        if not shared:
            low, high = {"campaign": (10, 40), "steady": (5, 30), "idle": (0, 10)}[kind]
            spec["balance"] = Decimal(rng.randint(low * 100, high * 100)) / 100
            spec["credit_limit"] = Decimal(-10) if i % 7 == 0 else Decimal(0)
        subs.append(spec)
        if events:
            trace[key] = events
    return FleetSample(trace, tuple(subs))


def _messages(eur: float) -> Decimal:
    return PRICE * max(0, round(eur / float(PRICE)))


def _steady(rng: random.Random, duration_s: float, step_s: float) -> list[tuple[float, Decimal]]:
    rate = rng.uniform(0.0005, 0.005)
    out = []
    t = step_s
    while t <= duration_s:
        amount = _messages(rate * step_s * rng.uniform(0.7, 1.3))
        if amount:
            out.append((t, amount))
        t += step_s
    return out


def _campaign(rng: random.Random, duration_s: float, step_s: float) -> list[tuple[float, Decimal]]:
    trickle = rng.uniform(0.0, 0.0005)
    sends = []
    for _ in range(rng.randint(1, 3)):
        length = rng.uniform(300, 1200)
        start = rng.uniform(0, max(0.0, duration_s - length))
        sends.append((start, start + length, rng.uniform(0.05, 0.3)))
    events: dict[float, Decimal] = {}
    t = step_s
    while t <= duration_s:
        amount = _messages(trickle * step_s * rng.uniform(0.5, 1.5))
        if amount:
            events[t] = amount
        t += step_s
    for start, end, rate in sends:
        t = float(int(start / CAMPAIGN_STEP_S + 1) * CAMPAIGN_STEP_S)
        while t <= min(end, duration_s):
            events[t] = events.get(t, Decimal(0)) + _messages(rate * CAMPAIGN_STEP_S)
            t += CAMPAIGN_STEP_S
    return sorted(events.items())


def _idle(rng: random.Random, duration_s: float, step_s: float) -> list[tuple[float, Decimal]]:
    if rng.random() < 0.5:
        return []  # truly idle: nothing at all
    out = []
    t = step_s
    while t <= duration_s:
        if rng.random() < 0.02:
            out.append((t, PRICE * rng.randint(1, 20)))
        t += step_s
    return out


def scenario(sample: FleetSample, trace_path: str | None = None) -> dict[str, Any]:
    """A scenario for the sample: a primary that can fund the fleet, Vonage auto-reload on;
    with ``trace_path``, its ``fleet_trace`` key names the trace (the simulator replays it)."""
    extra = {"fleet_trace": trace_path} if trace_path is not None else {}
    # A primary sized to its fleet: about five top-ups an hour cover the fleet's mean demand,
    # and the guard's caps (the scenario's ``guard`` settings) allow three times that.
    total = sum((a for events in sample.trace.values() for _, a in events), Decimal(0))
    hours = max(1.0, max((t for ev in sample.trace.values() for t, _ in ev), default=0.0) / 3600)
    amount = max(100, math.ceil(float(total) / hours / 5 / 100) * 100)
    return extra | {
        "initial_balance": amount * 3 // 5,
        "topup_amount": amount,
        "autoreload_threshold": amount // 5,
        "guard": {
            "max_topups_per_hour": 15,
            "max_topups_per_day": 360,
            "max_daily_amount": str(amount * 360),
        },
        "autoreload_check_min_s": 300,
        "autoreload_check_max_s": 600,
        "topup_latency_s": 2,
        "balance_latency_s": 0.3,
        "seed": 1,
        "subaccounts": [_plain(s) for s in sample.subaccounts],
    }


def _plain(spec: dict[str, Any]) -> dict[str, Any]:
    return {k: str(v) if isinstance(v, Decimal) else v for k, v in spec.items()}


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m topup_guard.fleet.tracegen", description=__doc__)
    p.add_argument("--subaccounts", type=int, default=50)
    p.add_argument("--hours", type=float, default=2.0)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--step", type=float, default=30.0, help="seconds between steady events")
    p.add_argument("--out", type=Path, required=True, help="the fleet trace CSV")
    p.add_argument("--scenario-out", type=Path, help="a scenario JSON naming the subaccounts")
    args = p.parse_args(argv)
    sample = generate(args.subaccounts, args.hours * 3600, seed=args.seed, step_s=args.step)
    args.out.write_text(format_fleet_trace(sample.trace), encoding="utf-8")
    if args.scenario_out is not None:
        where = os.path.relpath(args.out.resolve(), args.scenario_out.resolve().parent)
        text = json.dumps(scenario(sample, where), indent=1) + "\n"
        args.scenario_out.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
