"""A flood of 10,000 garbage, oversized and unauthenticated requests: bounded, flat, unchanged.

Over real sockets, in one event loop with the server (as in the guard). While it runs a ticker
measures how late the loop wakes; tracemalloc measures what the process holds after the flood
against what it held after a warm-up of the same mix (10,000 requests: +12 KiB when written).
"""

from __future__ import annotations

import asyncio
import gc
import itertools
import time
import tracemalloc
from collections.abc import Awaitable, Callable

import aiohttp

from tests.signals.conftest import TOKEN, Running

GOOD = b'{"messages": [{"status": "0", "remaining-balance": "1.00000000"}]}'
AUTH = {"Authorization": f"Bearer {TOKEN}"}
# (path, body, headers, expected status): each kind of abuse, in turn.
MIX: list[tuple[str, bytes, dict[str, str], int]] = [
    ("/v1/signals/sms", GOOD, {}, 401),  # no token: a real-looking answer from a stranger
    ("/v1/signals/sms", GOOD, {"Authorization": "Bearer guess-0123456789abcdef"}, 401),
    ("/v1/signals/sms", b"\x00garbage\xff" * 50, AUTH, 400),
    ("/v1/signals/balance", b'{"balance": "NaN"}', AUTH, 400),
    ("/v1/signals/refusal", b'{"code": "1000"}', AUTH, 400),
    ("/v1/signals/sms", b"[" * 20_000, AUTH, 400),
    ("/v1/signals/sms", b"{" + b" " * 100_000 + b"}", AUTH, 413),
    ("/v1/nope", b"{}", AUTH, 404),
]


async def flood(running: Running, n: int, concurrency: int = 16) -> dict[int, int]:
    statuses: dict[int, int] = {}
    jobs = itertools.islice(itertools.cycle(MIX), n)
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as http:

        async def worker() -> None:
            for path, body, headers, expected in jobs:
                async with http.post(running.url + path, data=body, headers=headers) as answer:
                    await answer.read()
                    assert answer.status == expected, (path, answer.status)
                    statuses[answer.status] = statuses.get(answer.status, 0) + 1

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return statuses


async def test_a_flood_of_bad_requests_leaves_the_inbox_unchanged_the_loop_on_time_and_memory_flat(
    start_signal: Callable[..., Awaitable[Running]],
) -> None:
    running = await start_signal(token=TOKEN, queue_size=64)
    lateness: list[float] = []
    stop = asyncio.Event()

    async def ticker() -> None:  # what the engine's loop would feel
        while not stop.is_set():
            due = time.monotonic() + 0.01
            await asyncio.sleep(0.01)
            lateness.append(time.monotonic() - due)

    tick = asyncio.create_task(ticker())
    tracemalloc.start()
    try:
        # Warm-up with tracing on: caches, pools and interned strings settle; what the flood then
        # adds on top is what it keeps.
        await flood(running, 2_000)
        gc.collect()
        before = tracemalloc.get_traced_memory()[0]
        statuses = await flood(running, 10_000)
        gc.collect()
        after = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
        stop.set()
        await tick

    grew_kib, late_ms = (after - before) / 1024, max(lateness) * 1000
    print(f"flood: +{grew_kib:.1f} KiB, loop at most {late_ms:.0f} ms late")
    assert sum(statuses.values()) == 10_000
    assert statuses[401] == 2_500
    assert after - before < 128 * 1024, f"grew {(after - before) / 1024:.0f} KiB"
    assert max(lateness) < 0.5, f"loop {max(lateness):.3f} s late"
    assert running.server.queue_depth == 0
    batch = running.inbox.drain()
    assert (batch.readings, batch.refusals, batch.successes) == ([], 0, 0)
    assert running.inbox.last_reading_wall is None
    assert running.rejected("unauthorized") == 2 * 12_000 / 8
    assert running.rejected("too_large") == 12_000 / 8
