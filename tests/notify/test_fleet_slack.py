"""Fleet notes on Slack name the subaccount: a refused transfer (the real ``SafeTransfer``
refused by the simulator over HTTP), a transfer the listing settled; applied ones are counted,
not messaged one by one. Slack is the local webhook receiver on a real socket."""

from __future__ import annotations

from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path

import pytest

from tests.conftest import DEMO_CREDENTIALS, QUIET_SCENARIO
from tests.run.slack_receiver import SlackReceiver
from topup_guard import retry
from topup_guard.clock import SystemClock, VirtualClock
from topup_guard.config import DEMO_API_KEY, DEMO_API_SECRET, Settings
from topup_guard.coordination import SoleGuard
from topup_guard.events import TransferFinished
from topup_guard.fleet.transfer import SafeTransfer
from topup_guard.fleet.transfer_base import TransferEntry
from topup_guard.fleet.transfer_ledger import SqliteTransferLedger
from topup_guard.notify import Dispatcher
from topup_guard.notify.build import build_dispatcher
from topup_guard.sim import RunningSimulator, start_simulator
from topup_guard.vonage.client import VonageClient

SUB, NAME = "sub00007", "Acme Dental"


@pytest.fixture
async def receiver() -> AsyncIterator[SlackReceiver]:
    slack = SlackReceiver()
    await slack.start()
    yield slack
    await slack.stop()


@pytest.fixture
async def fleet_sim() -> AsyncIterator[RunningSimulator]:
    running = await start_simulator(
        "127.0.0.1", 0, scenario=QUIET_SCENARIO, credentials=DEMO_CREDENTIALS
    )
    running.account.add_subaccount(SUB, name=NAME, balance=Decimal(1))
    retry.set_testing(True)
    try:
        yield running
    finally:
        retry.set_testing(False)
        await running.stop()


def notifier(slack: SlackReceiver) -> Dispatcher:
    settings = Settings(api_key=DEMO_API_KEY, slack_webhook_url=slack.webhook_url,
                        notify_group_wait=0.0)  # fmt: skip
    return build_dispatcher(settings, clock=VirtualClock())


def finished(entry: TransferEntry, *, settled_late: bool = False) -> TransferFinished:
    """As ``FleetGuard`` announces a transfer's outcome (the subaccount's name from the list)."""
    return TransferFinished(wall=entry.updated_wall, account=entry.account, name=NAME,
                            transfer_id=entry.transfer_id, state=entry.state.value,
                            amount=entry.applied_amount or entry.amount,
                            reference=entry.reference, detail=entry.detail,
                            settled_late=settled_late)  # fmt: skip


async def send(sim: RunningSimulator, tmp_path: Path, amount: Decimal) -> TransferEntry:
    ledger = SqliteTransferLedger(tmp_path / "state.sqlite")
    try:
        async with VonageClient(DEMO_API_KEY, DEMO_API_SECRET, rest_url=sim.url,
                                api_url=sim.url) as client:  # fmt: skip
            safe = SafeTransfer(client, ledger, SoleGuard(), SystemClock(),
                                primary_key=DEMO_API_KEY)  # fmt: skip
            result = await safe.send(SUB, amount, "dry in 90 s")
    finally:
        await ledger.close()
    assert result.entry is not None
    return result.entry


async def test_a_refused_transfer_is_one_message_naming_the_subaccount_by_key_and_name(
    fleet_sim: RunningSimulator, receiver: SlackReceiver, tmp_path: Path
) -> None:
    entry = await send(fleet_sim, tmp_path, Decimal(500))  # the primary holds EUR 100
    assert entry.state.value == "failed"
    slack = notifier(receiver)
    await slack.start()
    slack.emit(finished(entry))
    slack.emit(finished(entry))  # told twice (a settle and a cycle): still one message
    await slack.stop(timeout=5)
    (post,) = receiver.posts
    assert post.said.startswith(f"Transfer to {NAME} ({SUB}) not made: 500.00 EUR")
    assert entry.reference in post.text
    assert "Insufficient Credit" in post.text
    blocks = str(post.json["blocks"])
    assert f"{NAME} ({SUB})" in blocks
    assert f"#{entry.transfer_id}" in blocks
    assert DEMO_API_SECRET not in post.body.decode()


async def test_applied_transfers_are_not_messaged_one_by_one_but_a_late_settle_is(
    fleet_sim: RunningSimulator, receiver: SlackReceiver, tmp_path: Path
) -> None:
    entry = await send(fleet_sim, tmp_path, Decimal(10))
    assert entry.state.value == "succeeded"
    slack = notifier(receiver)
    await slack.start()
    for _ in range(5):
        slack.emit(finished(entry))
    await slack.drain(timeout=5)
    assert receiver.posts == []
    slack.emit(finished(entry, settled_late=True))  # an ambiguous answer the listing settled
    await slack.stop(timeout=5)
    (post,) = receiver.posts
    assert post.said.startswith(f"Transfer to {NAME} ({SUB}) applied (settled by the listing)")
