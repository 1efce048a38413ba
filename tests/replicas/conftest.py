"""Fixtures for the replicas tests: one simulator, one Redis, N real ``topup-guard run``."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from decimal import Decimal
from pathlib import Path

import pytest
from redis.asyncio import Redis

from tests.redisproc import RedisServer, redis_binary
from tests.replicas.harness import SCENARIO, GuardProcess, start_guards, stop_guards
from topup_guard.config import DEMO_API_KEY, DEMO_API_SECRET, DEMO_TRX
from topup_guard.ledger.redis import redis_client
from topup_guard.sim import RunningSimulator, SimCredentials, start_simulator

TopUpLog = list[tuple[float, Decimal]]
"""What the simulator saw at each top-up it applied: (simulated time, balance just before)."""


@pytest.fixture
async def burst_sim() -> AsyncIterator[tuple[RunningSimulator, TopUpLog]]:
    """The simulator in this loop (``SCENARIO``), with a record of the balance at each top-up.

    The record is the money's own truth: a top-up made when the balance did not need it (the
    second half of a double top-up) shows as a balance far above the trigger level.
    """
    creds = SimCredentials(DEMO_API_KEY, DEMO_API_SECRET, DEMO_TRX)
    sim = await start_simulator("127.0.0.1", 0, scenario=SCENARIO, credentials=creds)
    account, seen = sim.account, []
    original = account.top_up

    def recording_top_up(trx: str, t: float) -> Decimal:
        amount = original(trx, t)
        seen.append((t, account.balance - amount))  # credited at once (no credit delay)
        return amount

    account.top_up = recording_top_up  # type: ignore[method-assign]
    try:
        yield sim, seen
    finally:
        await sim.stop()


@pytest.fixture
def persistent_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server run as production should (``appendonly yes``): its data survives a restart."""
    binary = redis_binary()
    data = tmp_path / "redis-data"
    data.mkdir()
    server = RedisServer(binary, data_dir=data)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
async def inspect() -> AsyncIterator[Callable[[str], Redis]]:
    """``inspect(url)``: a client to read the lease and the ledger the guards write."""
    made: list[Redis] = []

    def make(url: str) -> Redis:
        client = redis_client(url, timeout=1.0)
        made.append(client)
        return client

    yield make
    for client in made:
        await client.aclose()


@pytest.fixture
def guards(tmp_path: Path) -> Iterator[Callable[[int, RunningSimulator, str], list[GuardProcess]]]:
    """``guards(n, sim, redis_url)`` starts n replicas; all are stopped after the test.

    Their logs are printed at teardown, so a failure shows what every replica did.
    """
    started: list[GuardProcess] = []

    def start(n: int, sim: RunningSimulator, redis_url: str) -> list[GuardProcess]:
        made = start_guards(n, sim, redis_url, tmp_path, first=len(started))
        started.extend(made)
        return made

    try:
        yield start
    finally:
        stop_guards(started)
        for g in started:
            tail = g.log_path.read_text(errors="replace").splitlines()[-15:]
            print(f"--- {g.name} (pid {g.proc.pid}, exit {g.proc.returncode})", *tail, sep="\n")
