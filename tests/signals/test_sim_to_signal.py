"""A sender sending through the simulator and forwarding each raw answer: the inbox sees the
balance the simulator holds, message by message, and the first refusal as urgent."""

from __future__ import annotations

import asyncio
import time
from decimal import Decimal

import aiohttp

from tests.signals.conftest import Running
from topup_guard.config import DEMO_API_KEY, DEMO_API_SECRET
from topup_guard.signals import forward_sms_answer
from topup_guard.sim import RunningSimulator
from topup_guard.vonage.payloads import basic_authorization

AUTH = {"Authorization": basic_authorization(DEMO_API_KEY, DEMO_API_SECRET)}
MESSAGE = {"from": "AcmeInc", "to": "447700900000", "text": "Your code is 1234"}


async def send_and_forward(http: aiohttp.ClientSession, sim: RunningSimulator, url: str) -> None:
    async with http.post(sim.url + "/sms/json", data=MESSAGE, headers=AUTH) as answer:
        forward_sms_answer(await answer.read(), url=url, at=time.time())


async def test_every_answer_becomes_the_simulators_balance_and_a_refusal_is_urgent(
    sim: RunningSimulator, start_signal: object
) -> None:
    signal: Running = await start_signal(wall=time.time)  # type: ignore[operator]
    async with aiohttp.ClientSession() as http:
        for _ in range(5):
            await send_and_forward(http, sim, signal.url)
        deadline = time.monotonic() + 3
        while signal.inbox.pending < 5:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.005)
        balances = sorted(r.balance for r in signal.inbox.drain().readings)
        assert balances[0] == sim.account.balance == Decimal("100") - 5 * Decimal("0.0075")

        sim.account.set_balance(Decimal("0.001"), sim.account.now)
        await send_and_forward(http, sim, signal.url)
        while not signal.inbox.urgent:
            assert time.monotonic() < deadline + 3
            await asyncio.sleep(0.005)
    batch = signal.inbox.drain()
    assert (batch.readings, batch.refusals, batch.successes) == ([], 1, 0)
