"""The real guard over real sockets, on virtual time: the engine, the VonageClient and the
simulator share one ``VirtualClock``. Only the HTTP exchanges (and fault delays) take real time,
so ten simulated minutes with dozens of injected faults run in well under a second.

``Watched`` sits between the engine and the client and checks, at every read, that a balance the
client returned is the balance the simulated account really had at that moment: a garbled answer
that slipped through as a number would show up here at once.
"""

from __future__ import annotations

import asyncio
import math
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from tests.conftest import DEMO_CREDENTIALS, QUIET_SCENARIO
from topup_guard.clock import VirtualClock
from topup_guard.config import DEMO_API_KEY, DEMO_API_SECRET, DEMO_TRX, Settings, load_settings
from topup_guard.engine import Engine
from topup_guard.errors import VonageError
from topup_guard.events import Recorder
from topup_guard.ledger.base import AttemptState
from topup_guard.ledger.sqlite import SqliteLedger
from topup_guard.model import Balance
from topup_guard.sim import RunningSimulator, start_simulator
from topup_guard.sim.context import CONTEXT
from topup_guard.sim.faults import Fault, parse_fault
from topup_guard.vonage.client import VonageClient

# Read faults after which the client must raise (everything but a late answer and a debt).
READ_FAILS = frozenset(
    {
        "error_500_before", "error_500_after", "timeout_after", "reset_before", "reset_after",
        "rate_limit", "malformed_json", "html_error", "empty_body", "huge_body", "value_string",
        "value_nan", "value_infinity", "redirect",
    }
)  # fmt: skip
# Real seconds. Long enough that a loaded CI machine never times out an answer that was served
# (seen at 0.3 s: a faulted answer lost on its way counts as a read error it was not); a
# ``timeout_after`` answer is held half as long again, so it always times out.
HTTP_TIMEOUT = 1.0
FAULT_DELAY = {"timeout_after": 1.5, "slow": 0.05}


def settings(url: str, state: Path, **extra: str) -> Settings:
    env = {
        "VONAGE_API_KEY": DEMO_API_KEY,
        "VONAGE_API_SECRET": DEMO_API_SECRET,
        "TOPUP_GUARD_TRX": DEMO_TRX,
        "TOPUP_GUARD_REST_URL": url,
        "TOPUP_GUARD_API_URL": url,
        "TOPUP_GUARD_STATE_PATH": str(state),
        "TOPUP_GUARD_MIN_BALANCE": "10",
        "TOPUP_GUARD_POLL_MIN": "0.5",
        "TOPUP_GUARD_POLL_INTERVAL": "5",
        "TOPUP_GUARD_SETTLE_WINDOW": "1.5",
        "TOPUP_GUARD_TOPUP_AMOUNT": "50",
        "TOPUP_GUARD_TOPUP_LATENCY": "0.5",
        # Room for a burst of five failed attempts: the caps and the breaker have their own
        # tests; here they must not hide whether each fault was handled right.
        "TOPUP_GUARD_MAX_TOPUPS_PER_HOUR": "20",
        "TOPUP_GUARD_MAX_TOPUPS_PER_DAY": "100",
        "TOPUP_GUARD_MAX_DAILY_AMOUNT": "10000",
        "TOPUP_GUARD_BREAKER_THRESHOLD": "10",
    }
    env |= {f"TOPUP_GUARD_{k.upper()}": v for k, v in extra.items()}
    return load_settings(env)


@dataclass
class Watched:
    """The client, with every read checked against the simulated account's true balance."""

    client: VonageClient
    sim: RunningSimulator
    reads: int = 0
    read_errors: Counter[str] = field(default_factory=Counter)
    misreads: list[tuple[Decimal, Decimal]] = field(default_factory=list)
    posts: int = 0

    async def get_balance(self) -> Balance:
        try:
            balance = await self.client.get_balance()
        except VonageError as exc:
            self.read_errors[type(exc).__name__] += 1
            raise
        self.reads += 1
        true = self.sim.account.balance
        # The one legitimate altered answer is the ``negative_balance`` debt: -|true|.
        debt = -abs(true) if true != 0 else Decimal(-1)
        if balance.value not in (true, debt):
            self.misreads.append((balance.value, true))
        return balance

    async def top_up(self, trx: str) -> None:
        self.posts += 1
        await self.client.top_up(trx)


def fault(endpoint: str, kind: str, count: int = 1) -> Fault:
    spec: dict[str, Any] = {"endpoint": endpoint, "kind": kind, "count": count}
    spec["delay"] = FAULT_DELAY.get(kind, 30.0)
    spec["retry_after"] = 0.0
    return parse_fault(spec)


@dataclass
class RunResult:
    sim: RunningSimulator
    ledger_states: list[AttemptState]
    api: Watched
    events: Recorder
    consumed: list[tuple[str, str]]  # (endpoint, kind) of every fault the guard ran into
    unresolved: int

    @property
    def succeeded(self) -> int:
        return self.ledger_states.count(AttemptState.SUCCEEDED)

    @property
    def received(self) -> int:
        return len(self.sim.account.topups)

    def needed_at_most(self, initial: Decimal, floor: Decimal, amount: Decimal) -> int:
        """Top-ups that keep the balance above the floor through the spend, plus one for the
        last forecast's look-ahead: more than this is a storm."""
        short = self.sim.account.served_spend + floor - initial
        return max(1, math.ceil(short / amount)) + 1


async def run_guard(
    tmp: Path,
    faults: list[Fault],
    *,
    seconds: float = 300.0,
    balance: str = "8",
    rate: str = "0.5",
    wrap_ledger: Callable[[SqliteLedger], Any] | None = None,
) -> RunResult:
    """Start a simulator, inject ``faults`` in order, run the guard for ``seconds`` of virtual
    time from a balance just under the 10 EUR floor, and report what happened."""
    clock = VirtualClock(start=0.0)
    sim = await start_simulator(
        "127.0.0.1", 0, scenario=QUIET_SCENARIO, credentials=DEMO_CREDENTIALS, clock=clock
    )
    try:
        sim.account.set_balance(Decimal(balance), sim.account.now)
        sim.account.set_spend_rate(Decimal(rate), sim.account.now)
        ctx = sim.app[CONTEXT]
        for f in faults:
            ctx.faults.add(f)
        injected = [(f.endpoint, f.kind) for f in faults for _ in range(f.count)]
        st = settings(sim.url, tmp / "ledger.db")
        ledger = SqliteLedger(st.state_path, account=DEMO_API_KEY)
        events = Recorder()
        async with VonageClient(DEMO_API_KEY, DEMO_API_SECRET, rest_url=sim.url,
                                api_url=sim.url, timeout=HTTP_TIMEOUT) as client:  # fmt: skip
            api = Watched(client, sim)
            used = ledger if wrap_ledger is None else wrap_ledger(ledger)
            engine = Engine(api=api, ledger=used, clock=clock, settings=st, sink=events)
            await asyncio.wait_for(engine.run(asyncio.Event(), until=seconds), timeout=60)
        left = sum(f["count"] for f in ctx.faults.active())
        consumed = injected[: len(injected) - left]
        states = [a.state for a in await ledger.latest(10_000)]
        unresolved = len(await ledger.unresolved())
        await ledger.close()
        return RunResult(sim, states, api, events, consumed, unresolved)
    finally:
        await sim.stop()
