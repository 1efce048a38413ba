"""The simulated sender: paced messages through /sms/json, each raw answer forwarded."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from decimal import Decimal

from tests.signals.conftest import TOKEN, Running
from topup_guard.config import DEMO_API_KEY, DEMO_API_SECRET
from topup_guard.sim import RunningSimulator
from topup_guard.sim.sender import SimSender


async def test_every_message_is_billed_and_its_answer_reaches_the_inbox_in_order(
    sim: RunningSimulator, start_signal: Callable[..., Awaitable[Running]]
) -> None:
    signal = await start_signal(token=TOKEN, wall=time.time)
    sender = SimSender(sim.url, api_key=DEMO_API_KEY, api_secret=DEMO_API_SECRET, rate=200,
                       signal_url=signal.url, token=TOKEN)  # fmt: skip
    started = time.monotonic()
    stats = await sender.run(asyncio.Event(), count=40)
    took = time.monotonic() - started
    assert (stats.sent, stats.accepted, stats.forwarded, stats.forward_failed) == (40, 40, 40, 0)
    assert 39 / 200 <= took < 2.0  # paced, not bursting
    await asyncio.sleep(0.01)
    readings = signal.inbox.drain().readings
    assert len(readings) == 40
    assert [r.balance for r in readings] == sorted((r.balance for r in readings), reverse=True)
    assert readings[-1].balance == sim.account.balance == Decimal(100) - 40 * Decimal("0.0075")
    assert "Secret" not in repr(sender)


async def test_refusals_are_recorded_and_a_missing_guard_never_stops_the_sender(
    sim: RunningSimulator, unused_tcp_port: int
) -> None:
    sim.account.set_balance(Decimal("0.02"), sim.account.now)  # two messages, then status 9
    sender = SimSender(sim.url, api_key=DEMO_API_KEY, api_secret=DEMO_API_SECRET, rate=500,
                       signal_url=f"http://127.0.0.1:{unused_tcp_port}")  # fmt: skip
    stats = await sender.run(asyncio.Event(), count=5)
    assert (stats.accepted, stats.refused, stats.forward_failed) == (2, 3, 5)
    assert len(stats.refused_at) == 3


async def test_setting_stop_ends_the_run_between_messages(sim: RunningSimulator) -> None:
    stop = asyncio.Event()
    sender = SimSender(sim.url, api_key=DEMO_API_KEY, api_secret=DEMO_API_SECRET, rate=5)
    task = asyncio.create_task(sender.run(stop))
    await asyncio.sleep(0.3)
    stop.set()
    stats = await asyncio.wait_for(task, 1.0)
    assert stats.sent == 2  # at t=0 and t=0.2
