"""``topup-guard ledger`` in fleet mode against a real redis-server: the shared transfer ledger
read beside the shared top-up ledger, per account, without writing a key."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from decimal import Decimal

import pytest
from redis.asyncio import Redis

from tests.cli.fleet_history import SUB_A, SUB_B, SUB_C, write_transfers
from tests.cli.helpers import clean_env
from tests.coordination.conftest import ACCOUNT, RedisServer
from topup_guard.cli import main
from topup_guard.fleet.transfer_redis import RedisTransferLedger
from topup_guard.fleet.transfer_view import read_redis_transfer_timelines
from topup_guard.ledger.base import AttemptState
from topup_guard.ledger.redis import RedisLedger
from topup_guard.ledger.redis_lease import RedisKeys, RedisLease

WALL = 1_800_000_000.0


@pytest.fixture
async def fleet_history(
    monkeypatch: pytest.MonkeyPatch,
    redis_server: RedisServer,
    redis_clients: Callable[[], Redis],
    keys: RedisKeys,
) -> None:
    lease = RedisLease(redis_clients(), keys, ttl=60.0, holder="pod-0")
    await lease.tick()
    topups = RedisLedger(redis_clients(), keys)
    first = await topups.begin(balance_before=Decimal("12.5"), expected_amount=Decimal("50"),
                               reason="the fleet needs it", wall=WALL, epoch=lease.epoch,
                               holder=lease.holder)  # fmt: skip
    await topups.transition(first.attempt_id, AttemptState.SUCCEEDED, wall=WALL + 5,
                            epoch=lease.epoch, credited=Decimal(50), evidence="api")  # fmt: skip
    transfers = await RedisTransferLedger(redis_clients(), keys).open()
    await write_transfers(transfers, epoch=lease.epoch, holder=lease.holder)
    await lease.stop()
    clean_env(monkeypatch)
    monkeypatch.setenv("VONAGE_API_KEY", ACCOUNT)
    monkeypatch.setenv("TOPUP_GUARD_REDIS_URL", redis_server.url)
    monkeypatch.setenv("TOPUP_GUARD_STATE_PATH", "/nonexistent/never-used.db")


async def ledger(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    capsys.readouterr()
    code = await asyncio.to_thread(main, ["ledger", *argv])
    assert code == 0
    return capsys.readouterr().out


@pytest.mark.usefixtures("fleet_history")
async def test_the_shared_ledger_shows_transfers_beside_top_ups_and_filters_by_account(
    capsys: pytest.CaptureFixture[str], redis_clients: Callable[[], Redis]
) -> None:
    before = sorted(await redis_clients().keys("*"))
    data = json.loads(await ledger(capsys, "--json"))
    assert data["store"] == "redis"
    assert data["primary"] == ACCOUNT
    assert [a["state"] for a in data["attempts"]] == ["succeeded"]
    a, b, c = data["transfers"]
    assert [t["account"] for t in (a, b, c)] == [SUB_A, SUB_B, SUB_C]
    assert (a["state"], a["applied_amount"], a["vonage_id"]) == ("succeeded", "10.00", "v-77")
    assert [(e["state"], e["superseded"]) for e in a["events"]] == [
        ("pending", False), ("unknown", False), ("succeeded", False), ("failed", True)
    ]  # fmt: skip
    assert (b["state"], c["state"]) == ("failed", "pending")
    assert a["reference"].startswith("tg-")
    assert a["reference"] != b["reference"]

    one = json.loads(await ledger(capsys, "--json", "--account", SUB_A))
    assert one["attempts"] == []
    assert [t["account"] for t in one["transfers"]] == [SUB_A]
    mine = json.loads(await ledger(capsys, "--json", "--account", ACCOUNT))
    assert len(mine["attempts"]) == 1
    assert mine["transfers"] == []

    text = await ledger(capsys)
    assert f"to {SUB_B}: EUR 20" in text
    assert "refused: Insufficient Credit" in text
    assert "redis://" not in text
    assert sorted(await redis_clients().keys("*")) == before, "reading wrote nothing"


async def test_an_account_that_never_transferred_has_no_transfers_and_gets_no_key(
    redis_clients: Callable[[], Redis],
) -> None:
    client = redis_clients()
    assert await read_redis_transfer_timelines(client, RedisKeys("nobody00")) == []
    assert await client.keys("*") == []
