"""What the simulator's handlers share: the account, the fault list, simulated time, counters."""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter, deque
from dataclasses import dataclass, field
from decimal import Decimal

from aiohttp import web

from topup_guard.clock import Clock
from topup_guard.sim.account import SimAccount
from topup_guard.sim.faults import FaultInjector


@dataclass
class SimContext:
    """Simulated time is ``account start + (clock.now() - started) * speed``.

    The account is advanced lazily, on each request, to the simulated time of that request: an
    idle simulator costs nothing and a fast ``speed`` needs no background task.
    """

    account: SimAccount
    clock: Clock
    speed: float
    started: float
    origin: float
    balance_latency_s: float = 0.0
    faults: FaultInjector = field(default_factory=FaultInjector)
    calls: Counter[tuple[str, str]] = field(default_factory=Counter)
    stopping: asyncio.Event = field(default_factory=asyncio.Event)
    # (simulated time, balance, autoReload) of recent get-balance answers, for ``stale`` faults.
    answers: deque[tuple[float, Decimal, bool]] = field(default_factory=lambda: deque(maxlen=512))

    def sim_time(self) -> float:
        return self.origin + (self.clock.now() - self.started) * self.speed

    def advance(self) -> float:
        """Bring the account up to now; returns the simulated time."""
        t = self.sim_time()
        self.account.advance_to(t)
        return t

    async def sleep(self, seconds: float) -> None:
        """Sleep real seconds, waking at once when the simulator stops (so stop never hangs)."""
        if seconds <= 0:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.stopping.wait(), timeout=seconds)

    def count(self, endpoint: str, outcome: str) -> None:
        self.calls[(endpoint, outcome)] += 1

    def calls_by_endpoint(self) -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = {}
        for (endpoint, outcome), n in sorted(self.calls.items()):
            out.setdefault(endpoint, {})[outcome] = n
        return out


CONTEXT: web.AppKey[SimContext] = web.AppKey("sim_context", SimContext)
