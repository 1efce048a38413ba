"""Real ``topup-guard run`` processes against one simulator and one Redis, and what to read back.

Each guard is ``sys.executable -m topup_guard run`` configured only by its environment, exactly as
a sidecar is; its JSON log goes to a file (a pipe nobody drains could block it). The test reads
the truth from three places: the simulator's ``/_sim/state`` (the money), the shared ledger and
lease keys in Redis (who spent, under which epoch) and each guard's ``/status``.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from redis.asyncio import Redis

from tests.redisproc import free_port
from tests.simctl import sim_state
from topup_guard.config import DEMO_API_KEY, DEMO_API_SECRET, DEMO_TRX
from topup_guard.ledger.redis_lease import RedisKeys
from topup_guard.sim import RunningSimulator, Scenario

# The burst every test drives: 2 EUR/s against a 20 EUR floor, 10 EUR per top-up. A top-up buys
# 5 s, so a 20 s run needs several, and the floor alone lasts 10 s: that is the time a takeover
# (lease TTL + one poll + the top-up) may take without the account running dry.
RATE = Decimal("2")
AMOUNT = Decimal("10")
FLOOR = Decimal("20")
LEASE_TTL = 2.0
POLL_MIN = 0.5
POLL_INTERVAL = 2.0
TOPUP_LATENCY = 1.0
SAFETY_MARGIN = 2.0
SETTLE_WINDOW = 3.0
# The longest lead a decision covers (next poll + latency + margin): the guard tops up when the
# balance would cross the floor within it, so right after a top-up the balance is at most this.
PEAK_BALANCE = FLOOR + RATE * Decimal(str(POLL_INTERVAL + TOPUP_LATENCY + SAFETY_MARGIN)) + AMOUNT

# 34 EUR: the first top-up is due ~3.5 s into the burst. Tests never set the balance during a
# burst: a jump down looks like a burst of spend to the forecast, which rightly buys two top-ups.
# Spends nothing until a test sets the rate; credits a top-up at once; Vonage's own auto-reload
# (first check after 300 s) never fires within a test, so every rise is one of the guards'.
SCENARIO = Scenario(
    initial_balance=Decimal("34"),
    topup_amount=AMOUNT,
    autoreload_threshold=Decimal("0"),
    topup_latency_s=0.0,
    balance_latency_s=0.0,
)
ACCOUNT_KEYS = RedisKeys(DEMO_API_KEY)


def guard_env(sim_url: str, redis_url: str, health_port: int, state: Path) -> dict[str, str]:
    """The environment of one replica: nothing from the developer's shell but PATH and the like."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("TOPUP_GUARD_", "VONAGE_", "OTEL_"))
    }
    env.update(
        VONAGE_API_KEY=DEMO_API_KEY,
        VONAGE_API_SECRET=DEMO_API_SECRET,
        TOPUP_GUARD_TRX=DEMO_TRX,
        TOPUP_GUARD_REST_URL=sim_url,
        TOPUP_GUARD_API_URL=sim_url,
        TOPUP_GUARD_STATE_PATH=str(state),
        TOPUP_GUARD_REDIS_URL=redis_url,
        TOPUP_GUARD_LEASE_TTL=str(LEASE_TTL),
        TOPUP_GUARD_POLL_MIN=str(POLL_MIN),
        TOPUP_GUARD_POLL_INTERVAL=str(POLL_INTERVAL),
        TOPUP_GUARD_TOPUP_AMOUNT=str(AMOUNT),
        TOPUP_GUARD_MIN_BALANCE=str(FLOOR),
        TOPUP_GUARD_TOPUP_LATENCY=str(TOPUP_LATENCY),
        TOPUP_GUARD_SAFETY_MARGIN=str(SAFETY_MARGIN),
        TOPUP_GUARD_SETTLE_WINDOW=str(SETTLE_WINDOW),
        TOPUP_GUARD_MAX_TOPUPS_PER_HOUR="100",
        TOPUP_GUARD_MAX_TOPUPS_PER_DAY="100",
        TOPUP_GUARD_MAX_DAILY_AMOUNT="100000",
        TOPUP_GUARD_HEALTH_HOST="127.0.0.1",
        TOPUP_GUARD_HEALTH_PORT=str(health_port),
        TOPUP_GUARD_SIGNAL_PORT="0",  # three guards on one host: no shared signal port
        TOPUP_GUARD_LOG_FORMAT="json",
        OTEL_SDK_DISABLED="true",
    )
    return env


@dataclass
class GuardProcess:
    """One ``topup-guard run`` replica."""

    name: str
    health_port: int
    log_path: Path
    proc: subprocess.Popen[bytes]
    killed: bool = field(default=False)

    @property
    def status_url(self) -> str:
        return f"http://127.0.0.1:{self.health_port}/status"

    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill9(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)
        self.killed = True

    def logs(self) -> list[dict[str, Any]]:
        out = []
        for line in self.log_path.read_text(errors="replace").splitlines():
            if line.startswith("{"):
                try:
                    out.append(json.loads(line))
                except json.JSONDecodeError:
                    continue
        return out

    def logs_count(self, event: str) -> int:
        """How many JSON log lines carry ``"event": event``."""
        return sum(1 for r in self.logs() if r.get("event") == event)

    async def status(self) -> dict[str, Any] | None:
        """``/status``, or None while the health server is not up (or the process is dead)."""
        try:
            timeout = aiohttp.ClientTimeout(total=2)
            async with (
                aiohttp.ClientSession(timeout=timeout) as s,
                s.get(self.status_url) as r,
            ):
                data: dict[str, Any] = await r.json()
                return data
        except (aiohttp.ClientError, TimeoutError):
            return None


def start_guards(
    count: int, sim: RunningSimulator, redis_url: str, tmp: Path, *, first: int = 0
) -> list[GuardProcess]:
    guards = []
    for i in range(first, first + count):
        port = free_port()
        log_path = tmp / f"guard{i}.log"
        env = guard_env(sim.url, redis_url, port, tmp / f"guard{i}.db")
        with log_path.open("wb") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "topup_guard", "run"],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        guards.append(GuardProcess(f"guard{i}", port, log_path, proc))
    return guards


def stop_guards(guards: list[GuardProcess]) -> None:
    """SIGTERM (graceful, as Kubernetes does), then kill whatever is still running."""
    for g in guards:
        if g.alive():
            g.proc.terminate()
    for g in guards:
        try:
            g.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            g.proc.kill()
            g.proc.wait(timeout=10)


async def eventually(
    check: Callable[[], Awaitable[bool]],
    within: float,
    what: str,
    *,
    every: float = 0.1,
    explain: Callable[[], str] | None = None,
) -> float:
    """Poll ``check`` until it holds; returns the seconds it took. Fails after ``within``."""
    start = time.monotonic()
    while not await check():
        if time.monotonic() - start > within:
            seen = f" (last seen: {explain()})" if explain is not None else ""
            pytest.fail(f"not within {within} s: {what}{seen}")
        await asyncio.sleep(every)
    return time.monotonic() - start


async def lease_value(redis: Redis) -> str | None:
    """``"<epoch>|<holder>|<token>"`` of the live lease, or None."""
    value = await redis.get(ACCOUNT_KEYS.lease)
    return None if value is None else str(value)


async def ledger_attempts(redis: Redis) -> list[dict[str, Any]]:
    """Every attempt of the shared ledger, as recorded (latest applied event), by id."""
    raw = await redis.hgetall(ACCOUNT_KEYS.attempts)
    return sorted((json.loads(v) for v in raw.values()), key=lambda a: int(a["attempt_id"]))


async def open_attempts(redis: Redis) -> int:
    return int(await redis.scard(ACCOUNT_KEYS.open))


def holder_of(guards: list[GuardProcess], lease: str | None) -> GuardProcess | None:
    """The replica whose ``<host>:<pid>`` is in the lease value."""
    if lease is None:
        return None
    holder = lease.split("|")[1]
    return next((g for g in guards if holder.endswith(f":{g.proc.pid}")), None)


@dataclass(frozen=True)
class Snapshot:
    """The simulator's and the ledger's view at one moment with no top-up in flight."""

    sim: dict[str, Any]
    attempts: list[dict[str, Any]]

    @property
    def topups(self) -> int:
        return len(self.sim["topups"])

    def states(self) -> list[str]:
        return [a["state"] for a in self.attempts]


async def settled(sim: RunningSimulator, redis: Redis, within: float = 20.0) -> Snapshot:
    """Sim state and ledger read with no attempt open and the ledger unchanged around the read.

    Top-ups may still be made meanwhile (the guards keep running); reading the ledger before and
    after the simulator and retrying until both agree makes the pair consistent.
    """
    deadline = time.monotonic() + within
    while True:
        before = await ledger_attempts(redis)
        state = await sim_state(sim)
        after = await ledger_attempts(redis)
        if before == after and await open_attempts(redis) == 0:
            if len(state["topups"]) == len(after) or time.monotonic() > deadline:
                return Snapshot(state, after)
        elif time.monotonic() > deadline:
            return Snapshot(state, after)
        await asyncio.sleep(0.1)
