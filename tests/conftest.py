"""Shared fixtures. Keep each one small; add yours below with a line saying what it is for."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from decimal import Decimal

import pytest

from tests.redisproc import REDIS_SERVER, RedisServer
from topup_guard.config import DEMO_API_KEY, DEMO_API_SECRET, DEMO_TRX
from topup_guard.sim import RunningSimulator, Scenario, SimCredentials, start_simulator

# A simulated account that spends nothing unless a test says so (POST /_sim/control
# {"spend_rate": ...}), credits top-ups at once and answers without latency.
QUIET_SCENARIO = Scenario(
    initial_balance=Decimal("100"),
    topup_amount=Decimal("50"),
    autoreload_threshold=Decimal("10"),
    topup_latency_s=0.0,
    balance_latency_s=0.0,
)
DEMO_CREDENTIALS = SimCredentials(DEMO_API_KEY, DEMO_API_SECRET, DEMO_TRX)


@pytest.fixture
async def sim() -> AsyncIterator[RunningSimulator]:
    """The Vonage simulator on 127.0.0.1 (free port), quiet scenario, demo credentials."""
    running = await start_simulator(
        "127.0.0.1", 0, scenario=QUIET_SCENARIO, credentials=DEMO_CREDENTIALS
    )
    try:
        yield running
    finally:
        await running.stop()


# A real redis-server per test (no persistence: a restart loses its data), for the coordination
# and replicas tests; skipped only when the binary is missing. See tests/redisproc.py.
@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    """A running redis-server on a free port, killed after the test."""
    if REDIS_SERVER is None:
        pytest.skip("redis-server is not installed (apt-get install redis-server)")
    server = RedisServer(REDIS_SERVER)
    server.start()
    try:
        yield server
    finally:
        server.stop()
