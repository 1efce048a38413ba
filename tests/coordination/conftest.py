"""Redis clients and keys for the lease and ledger tests.

The ``redis_server`` fixture itself (a real redis-server per test) lives in ``tests/conftest.py``,
shared with ``tests/replicas``; ``RedisServer`` is re-exported here for the tests that type it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from redis.asyncio import Redis

from tests.redisproc import RedisServer
from topup_guard.ledger.redis import redis_client
from topup_guard.ledger.redis_lease import RedisKeys

__all__ = ["ACCOUNT", "RedisServer", "eventually"]

ACCOUNT = "abcd1234"


@pytest.fixture
async def redis_clients(redis_server: RedisServer) -> AsyncIterator[Callable[[], Redis]]:
    """Makes clients of ``redis_server`` as the guard builds them (one per simulated replica)."""
    made: list[Redis] = []

    def make() -> Redis:
        client = redis_client(redis_server.url, timeout=0.5)
        made.append(client)
        return client

    yield make
    for client in made:
        await client.aclose()


@pytest.fixture
def keys() -> RedisKeys:
    return RedisKeys(ACCOUNT)


async def eventually(check: Callable[[], bool | Awaitable[bool]], within: float = 5.0) -> None:
    """Wait (polling every 20 ms) until ``check()`` holds; fail after ``within`` seconds."""
    deadline = time.monotonic() + within
    while True:
        result = check()
        if not isinstance(result, bool):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            pytest.fail(f"condition not met within {within} s")
        await asyncio.sleep(0.02)
