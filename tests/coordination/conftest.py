"""A real redis-server per test (127.0.0.1, free port, no persistence), stoppable for outages.

Skipped only when the binary is missing (CI installs it with apt: ``redis-server``).
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

import pytest
from redis.asyncio import Redis

from topup_guard.ledger.redis import redis_client
from topup_guard.ledger.redis_lease import RedisKeys

REDIS_SERVER = shutil.which("redis-server")
ACCOUNT = "abcd1234"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _answers_ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
    except OSError:
        return False


class RedisServer:
    """One redis-server process; ``stop()`` and ``start()`` simulate an outage on the same port."""

    def __init__(self, binary: str) -> None:
        self.binary = binary
        self.port = _free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        assert self._proc is None, "already running"
        args = ["--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        self._proc = subprocess.Popen(
            [self.binary, *args],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while not _answers_ping(self.port):
            if self._proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                pytest.fail(f"redis-server did not come up on port {self.port}")
            time.sleep(0.01)

    def stop(self) -> None:
        if self._proc is None:
            return
        self._proc.kill()
        self._proc.wait(timeout=10)
        self._proc = None


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    """A running redis-server, killed after the test."""
    if REDIS_SERVER is None:
        pytest.skip("redis-server is not installed (apt-get install redis-server)")
    server = RedisServer(REDIS_SERVER)
    server.start()
    try:
        yield server
    finally:
        server.stop()


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
