"""The simulated sender: paced messages through /sms/json, each raw answer forwarded."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from decimal import Decimal

import pytest

from tests.signals.conftest import TOKEN, Running
from topup_guard.config import DEMO_API_KEY, DEMO_API_SECRET
from topup_guard.sim import RunningSimulator
from topup_guard.sim.sender import Answer, SimSender


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


def test_a_burst_step_changes_the_pace_at_its_start_and_the_pace_never_drifts() -> None:
    sender = SimSender("http://127.0.0.1:1", api_key="k", api_secret="s", rate=5,
                       steps=[(1.0, 50.0), (2.0, 5.0)])  # fmt: skip
    due, dues = 0.0, [0.0]
    while due < 2.5:
        due = sender.next_due(due)
        dues.append(due)
    assert dues[:6] == pytest.approx([0.0, 0.2, 0.4, 0.6, 0.8, 1.0])  # the burst starts on time
    in_burst = [d for d in dues if 1.0 <= d < 2.0]
    assert len(in_burst) == 50
    assert dues[dues.index(pytest.approx(2.0)) + 1] == pytest.approx(2.2)
    assert [sender.rate_at(t) for t in (0.5, 1.5, 9.0)] == [5, 50, 5]


@pytest.mark.parametrize(
    ("steps", "error"),
    [
        ([(0.0, 10.0)], "steps must start after 0 s"),
        ([(2.0, 10.0), (1.0, 5.0)], "in increasing order"),
        ([(1.0, 0.0)], "rate must be positive"),
    ],
)
def test_steps_out_of_order_or_without_a_positive_rate_are_refused(
    steps: list[tuple[float, float]], error: str
) -> None:
    with pytest.raises(ValueError, match=error):
        SimSender("http://127.0.0.1:1", api_key="k", api_secret="s", rate=5, steps=steps)


async def test_each_answer_reaches_the_observer_with_its_status_and_balance(
    sim: RunningSimulator,
) -> None:
    sim.account.set_balance(Decimal("0.02"), sim.account.now)
    seen: list[Answer] = []
    sender = SimSender(sim.url, api_key=DEMO_API_KEY, api_secret=DEMO_API_SECRET, rate=500,
                       on_answer=seen.append)  # fmt: skip
    await sender.run(asyncio.Event(), count=3)
    assert [(a.index, a.status, a.balance) for a in seen] == [
        (0, "0", Decimal("0.0125")),
        (1, "0", Decimal("0.005")),
        (2, "9", None),
    ]
    assert seen[0].at <= seen[1].at <= seen[2].at
