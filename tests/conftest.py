"""Shared fixtures. Keep each one small; add yours below with a line saying what it is for."""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Iterator
from decimal import Decimal
from typing import Any

import pytest
from aiohttp import ClientResponse, StreamReader
from aiohttp.client_proto import ResponseHandler

from tests.redisproc import RedisServer, redis_binary
from topup_guard.config import DEMO_API_KEY, DEMO_API_SECRET, DEMO_TRX
from topup_guard.sim import RunningSimulator, Scenario, SimCredentials, start_simulator


def _aioresponses_compat() -> None:
    """Make aioresponses 0.7.9 work on aiohttp >= 3.14 (pnuckowski/aioresponses#289).

    aiohttp 3.14 made ``ClientResponse(stream_writer=...)`` a required argument, which
    aioresponses does not pass. A mocked response was never written to a socket, so a writer
    that reports zero bytes sent is the truthful stand-in. Self-gating: inert on an aiohttp (or
    an aioresponses release) that does not need it. We stay on aiohttp 3.14 for its security
    fixes (README).
    """
    if "stream_writer" not in inspect.signature(ClientResponse.__init__).parameters:
        return
    import aioresponses.core

    original = aioresponses.core.RequestMatch._build_response

    def build(self: Any, *args: Any, **kwargs: Any) -> Any:
        response_class = kwargs.get("response_class") or ClientResponse
        kwargs["response_class"] = _with_stream_writer(response_class)
        return original(self, *args, **kwargs)

    aioresponses.core.RequestMatch._build_response = build  # type: ignore[method-assign]

    # A mocked body larger than the reader's limit makes aiohttp 3.14 pause the (absent)
    # socket; there is nothing to pause, so the stand-in protocol ignores it.
    class _NoSocket(ResponseHandler):
        def pause_reading(self, *args: Any, **kwargs: Any) -> None:
            pass

        def resume_reading(self, *args: Any, **kwargs: Any) -> None:
            pass

    def reader(loop: Any = None) -> StreamReader:
        return StreamReader(_NoSocket(loop=loop), limit=2**16, loop=loop)

    aioresponses.core.stream_reader_factory = reader  # type: ignore[attr-defined]


class _NothingSent:
    output_size = 0


def _with_stream_writer(cls: type[ClientResponse]) -> type[ClientResponse]:
    class Compat(cls):  # type: ignore[valid-type, misc]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            kwargs.setdefault("stream_writer", _NothingSent())
            super().__init__(*args, **kwargs)

    return Compat


_aioresponses_compat()


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
# and replicas tests; a missing binary fails the test with how to install it (never a skip).
@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    """A running redis-server on a free port, killed after the test."""
    server = RedisServer(redis_binary())
    server.start()
    try:
        yield server
    finally:
        server.stop()


def _ours(task: Any) -> bool:
    """A task running this project's code (test servers' own handler tasks are their business)."""
    code = getattr(task.get_coro(), "cr_code", None)
    return code is not None and "/topup_guard/" in code.co_filename


@pytest.fixture(autouse=True)
async def _no_leaked_tasks() -> AsyncIterator[None]:
    """Fail a test that leaves this project's asyncio tasks running: a leaked task is a loop,
    socket or retry that would keep a real guard busy after it believes it stopped (as kopf's
    test suite checks)."""
    import asyncio

    before = set(asyncio.all_tasks())
    yield
    await asyncio.sleep(0)  # let tasks that are finishing finish
    leaked = [
        t for t in asyncio.all_tasks() - before
        if t is not asyncio.current_task() and not t.done() and _ours(t)
    ]  # fmt: skip
    assert not leaked, f"tasks left running: {[t.get_coro() for t in leaked]}"
