"""Small traces and scenarios for backtest tests, written to files as a user would."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

from topup_guard.backtest import parse_trace
from topup_guard.sim.scenario import Scenario

# An account Vonage's auto-reload alone cannot keep up with: 0.05 EUR/s drains the 5 EUR below
# the threshold in 100 s, but Vonage looks only every 900-1000 s. A guard polling every few
# seconds, with a 2.3 s top-up, has time to spare.
SCENARIO: dict[str, Any] = {
    "initial_balance": 50,
    "topup_amount": 50,
    "autoreload_threshold": 5,
    "autoreload_check_min_s": 900,
    "autoreload_check_max_s": 1000,
    "topup_latency_s": 2,
    "balance_latency_s": 0.3,
    "seed": 7,
}


def steady_rows(seconds: int = 3600, every: int = 2, eur: str = "0.10") -> list[str]:
    """One ``eur`` event every ``every`` seconds: 0.05 EUR/s by default, 180 EUR an hour."""
    return ["t,spend"] + [f"{t},{eur}" for t in range(0, seconds, every)]


def write_trace(tmp_path: Path, rows: list[str], name: str = "trace.csv") -> Path:
    path = tmp_path / name
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return path


def write_scenario(tmp_path: Path, name: str = "scenario.json", **changes: Any) -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(SCENARIO | changes), encoding="utf-8")
    return path


def scenario(**changes: Any) -> Scenario:
    return Scenario.from_dict(json.loads(json.dumps(SCENARIO | changes)))


def trace(rows: list[str]) -> list[tuple[float, Decimal]]:
    return parse_trace(rows)
