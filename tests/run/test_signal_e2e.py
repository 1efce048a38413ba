"""Issue 12's acceptance over real HTTP: a sender sending through the simulator and forwarding
every answer to a real `topup-guard run`, which polls `get-balance` only every 120 s."""

from __future__ import annotations

import asyncio
import math
import time
from decimal import Decimal
from pathlib import Path

import pytest

from tests.run.guardproc import GuardProcess, free_port, guard_env
from tests.simctl import sim_post, sim_state
from topup_guard.config import DEMO_API_KEY, DEMO_API_SECRET
from topup_guard.sim import RunningSimulator
from topup_guard.sim.sender import SimSender

pytestmark = pytest.mark.slow


async def _calls(sim: RunningSimulator, endpoint: str) -> int:
    return sum((await sim_state(sim))["calls"].get(endpoint, {}).values())


async def _guard_with_signal(
    sim: RunningSimulator, tmp_path: Path, **extra: str
) -> tuple[GuardProcess, SimSender]:
    """A real `run` polling every 120 s with its signal port open, and a 20 msg/s sender that
    forwards every answer to it (not started yet)."""
    signal = free_port()
    env = guard_env(sim, tmp_path / "ledger.db", TOPUP_GUARD_SIGNAL_PORT=str(signal),
                    TOPUP_GUARD_POLL_INTERVAL="120", TOPUP_GUARD_TOPUP_AMOUNT="10",
                    **extra)  # fmt: skip
    guard = await GuardProcess.start(env)
    await guard.event("guard_started")
    sender = SimSender(sim.url, api_key=DEMO_API_KEY, api_secret=DEMO_API_SECRET, rate=20,
                       signal_url=f"http://127.0.0.1:{signal}")  # fmt: skip
    return guard, sender


async def test_a_sender_at_20_messages_a_second_is_never_refused_and_polling_stays_rare(
    sim: RunningSimulator, tmp_path: Path
) -> None:
    await sim_post(sim, "/_sim/control", {"balance": "8", "topup_amount": "10"})
    guard, sender = await _guard_with_signal(sim, tmp_path, TOPUP_GUARD_MIN_HEADROOM="")
    try:
        reads_before = await _calls(sim, "get-balance")
        stop = asyncio.Event()
        started = time.time()
        task = asyncio.create_task(sender.run(stop))
        await asyncio.sleep(60)
        stop.set()
        stats = await task
        reads = await _calls(sim, "get-balance") - reads_before
    finally:
        code, _ = await guard.terminate()
    assert code == 0
    late = [t for t in stats.refused_at if t - started > 3]
    assert late == [], f"refused after the first 3 s: {len(late)} of {stats.sent}"
    assert stats.forwarded > 1000
    assert reads <= 30, f"{reads} get-balance calls in a minute of traffic"
    state = await sim_state(sim)
    spent = Decimal(str(state["served_spend"]))
    needed = max(0, math.ceil((Decimal(10) + spent - Decimal(8)) / 10))
    assert len(state["topups"]) <= needed + 2, (len(state["topups"]), needed)


async def test_the_first_refused_message_brings_a_top_up_within_3_s(
    sim: RunningSimulator, tmp_path: Path
) -> None:
    # Less than one message's price (0.0075 EUR), a floor of 0 and a 120-s poll: only the
    # sender's refusal can make the guard look in time.
    await sim_post(sim, "/_sim/control", {"balance": "0.005", "topup_amount": "10"})
    guard, sender = await _guard_with_signal(sim, tmp_path, TOPUP_GUARD_MIN_BALANCE="0")
    try:
        await asyncio.sleep(1.5)  # its first polls: nothing spent, nothing to do
        assert (await sim_state(sim))["topups"] == []
        stop = asyncio.Event()
        task = asyncio.create_task(sender.run(stop))
        deadline = time.time() + 15
        topped_at = None
        while time.time() < deadline and topped_at is None:
            if (await sim_state(sim))["topups"]:
                topped_at = time.time()
            await asyncio.sleep(0.05)
        stop.set()
        stats = await task
    finally:
        code, _ = await guard.terminate()
    assert code == 0
    assert stats.refused_at, "the balance ran out, so a message was refused"
    assert topped_at is not None, "no top-up after the refusal"
    assert topped_at - stats.refused_at[0] <= 3.0, topped_at - stats.refused_at[0]
    assert guard.events("messages_refused")
