"""The engine on the backtest's in-process account and sampled virtual clock (no sockets):
days of polling in seconds. Used by the wall-clock and soak proofs."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from pathlib import Path

from topup_guard.backtest import InProcessAccount, SampledClock
from topup_guard.config import DEMO_API_KEY, DEMO_API_SECRET, DEMO_TRX, Settings, load_settings
from topup_guard.engine import Engine
from topup_guard.events import Event
from topup_guard.ledger.sqlite import SqliteLedger
from topup_guard.sim.account import SimAccount
from topup_guard.sim.scenario import Scenario
from topup_guard.sim.spend import SpendProfile

HOUR = 3600.0
DAY = 86400.0


class CountingSink:
    """Counts events by type and keeps none: a week of polls stays O(1) in the test's memory."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}

    def emit(self, event: Event) -> None:
        name = type(event).__name__
        self.counts[name] = self.counts.get(name, 0) + 1


def account(spend: SpendProfile, balance: str = "60") -> SimAccount:
    return SimAccount(
        api_key=DEMO_API_KEY,
        api_secret=DEMO_API_SECRET,
        trx=DEMO_TRX,
        balance=Decimal(balance),
        topup_amount=Decimal("50"),
        autoreload_threshold=Decimal("5"),
        check_min_s=1e9,  # Vonage's own auto-reload off: every credit here is the guard's
        check_max_s=1e9,
        spend=spend,
        message_price=Decimal("0.01"),
    )


class VRig:
    def __init__(self, tmp: Path, acct: SimAccount, **extra: str) -> None:
        self.account = acct
        self.clock = SampledClock(acct)
        self.api = InProcessAccount(acct, self.clock, Scenario.from_dict(
            {"initial_balance": 1, "topup_amount": 50, "autoreload_threshold": 5,
             "topup_latency_s": 1, "balance_latency_s": 0.2}))  # fmt: skip
        env = {
            "VONAGE_API_KEY": DEMO_API_KEY,
            "VONAGE_API_SECRET": DEMO_API_SECRET,
            "TOPUP_GUARD_TRX": DEMO_TRX,
            "TOPUP_GUARD_STATE_PATH": str(tmp / "ledger.db"),
            "TOPUP_GUARD_MIN_BALANCE": "10",
            "TOPUP_GUARD_TOPUP_AMOUNT": "50",
        }
        env |= {f"TOPUP_GUARD_{k.upper()}": v for k, v in extra.items()}
        self.settings: Settings = load_settings(env)
        self.ledger = SqliteLedger(self.settings.state_path, account=DEMO_API_KEY)
        self.sink = CountingSink()
        self.engine = Engine(api=self.api, ledger=self.ledger, clock=self.clock,
                             settings=self.settings, sink=self.sink)  # fmt: skip

    async def run_until(self, t: float) -> None:
        await self.engine.run(asyncio.Event(), until=t)

    def topup_times(self) -> list[float]:
        """Monotonic (simulated, never jumping) times the account was credited by the guard."""
        return [t for t, _ in self.account.topups]


def most_in_window(times: list[float], window: float) -> int:
    """The largest number of ``times`` in any window of ``window`` seconds."""
    times = sorted(times)
    best, j = 0, 0
    for i, t in enumerate(times):
        while times[j] <= t - window:
            j += 1
        best = max(best, i - j + 1)
    return best
