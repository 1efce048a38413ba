"""``topup-guard ledger`` and ``explain`` against the shared ledger in a real redis-server."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from decimal import Decimal

import pytest
from redis.asyncio import Redis

from tests.cli.helpers import clean_env
from tests.coordination.conftest import ACCOUNT, RedisServer
from topup_guard.cli import main
from topup_guard.errors import LedgerError
from topup_guard.ledger.base import AttemptState
from topup_guard.ledger.redis import RedisLedger, read_timelines
from topup_guard.ledger.redis_lease import RedisKeys, RedisLease

WALL = 1_800_000_000.0


@pytest.fixture
async def history(
    redis_clients: Callable[[], Redis], keys: RedisKeys
) -> AsyncIterator[RedisLedger]:
    """Two attempts by pod-0; the first also got a late, refused event from a racing guard."""
    lease = RedisLease(redis_clients(), keys, ttl=60.0, holder="pod-0")
    await lease.tick()
    ledger = RedisLedger(redis_clients(), keys)
    common = {"epoch": lease.epoch, "holder": lease.holder}
    first = await ledger.begin(
        balance_before=Decimal("12.5"),
        expected_amount=Decimal("50"),
        reason="forecast exhaustion in 4 min",
        wall=WALL,
        **common,
    )
    await ledger.transition(
        first.attempt_id,
        AttemptState.UNKNOWN,
        wall=WALL + 1,
        epoch=lease.epoch,
        detail="reset after sending",
    )
    await ledger.transition(
        first.attempt_id,
        AttemptState.SUCCEEDED,
        wall=WALL + 8,
        epoch=lease.epoch,
        credited=Decimal("50"),
        evidence="balance step +50",
    )
    await ledger.transition(
        first.attempt_id,
        AttemptState.UNCONFIRMED,
        wall=WALL + 70,
        epoch=lease.epoch,
        detail="no credit seen",
    )
    second = await ledger.begin(
        balance_before=Decimal("9"),
        expected_amount=Decimal("50"),
        reason="below the floor",
        wall=WALL + 3600,
        **common,
    )
    await ledger.transition(
        second.attempt_id,
        AttemptState.FAILED,
        wall=WALL + 3601,
        epoch=lease.epoch,
        detail="payment refused",
    )
    yield ledger
    await lease.stop()


@pytest.mark.usefixtures("history")
async def test_the_timeline_reader_returns_every_event_in_order_with_superseded_ones_marked(
    redis_clients: Callable[[], Redis], keys: RedisKeys
) -> None:
    trail = await read_timelines(redis_clients(), keys)
    assert trail.store == "redis"
    assert trail.location == f"topup-guard:{{{ACCOUNT}}}"
    first, second = trail.timelines
    assert first.attempt.state is AttemptState.SUCCEEDED, "the refused event was not applied"
    assert [(e.state.value, e.superseded) for e in first.events] == [
        ("pending", False),
        ("unknown", False),
        ("succeeded", False),
        ("unconfirmed", True),
    ]
    assert first.events[2].credited == Decimal("50")
    assert second.attempt.state is AttemptState.FAILED
    later = await read_timelines(redis_clients(), keys, since_wall=WALL + 60)
    assert [t.attempt.attempt_id for t in later.timelines] == [2]


async def test_the_reader_says_so_when_redis_holds_no_ledger_for_the_account(
    redis_clients: Callable[[], Redis],
) -> None:
    with pytest.raises(LedgerError, match="no shared ledger in Redis under"):
        await read_timelines(redis_clients(), RedisKeys("nobody00"))


@pytest.fixture
def redis_env(monkeypatch: pytest.MonkeyPatch, redis_server: RedisServer) -> None:
    clean_env(monkeypatch)
    monkeypatch.setenv("VONAGE_API_KEY", ACCOUNT)
    monkeypatch.setenv("TOPUP_GUARD_REDIS_URL", redis_server.url)
    monkeypatch.setenv("TOPUP_GUARD_STATE_PATH", "/nonexistent/never-used.db")
    monkeypatch.setenv("TOPUP_GUARD_HEALTH_PORT", "9")


@pytest.mark.usefixtures("history", "redis_env")
async def test_ledger_command_reads_the_store_the_configuration_selects(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code = await asyncio.to_thread(main, ["ledger", "--json", "--state", "succeeded"])
    out = capsys.readouterr().out
    assert code == 0
    data = json.loads(out)
    assert data["store"] == "redis"
    (attempt,) = data["attempts"]
    assert attempt["credited"] == "50"
    assert [e["superseded"] for e in attempt["events"]] == [False, False, False, True]
    assert "redis://" not in out, "the location is the key prefix, never the URL"

    code = await asyncio.to_thread(main, ["ledger"])
    out = capsys.readouterr().out
    assert "superseded: another guard resolved it first" in out
    assert "redis ledger at topup-guard:{" in out


@pytest.mark.usefixtures("history", "redis_env")
async def test_explain_falls_back_to_the_shared_ledger(capsys: pytest.CaptureFixture[str]) -> None:
    code = await asyncio.to_thread(main, ["explain", "--json"])
    assert code == 0
    data = json.loads(capsys.readouterr().out)
    assert data["source"] == "ledger"
    assert data["attempt"]["attempt_id"] == 2
    assert data["attempt"]["detail"] == "payment refused"


async def test_ledger_command_with_redis_down_is_one_line_and_exit_1(
    capsys: pytest.CaptureFixture[str], redis_env: None, redis_server: RedisServer
) -> None:
    redis_server.stop()
    code = await asyncio.to_thread(main, ["ledger"])
    err = capsys.readouterr().err
    assert code == 1
    assert "the shared ledger in Redis cannot be read" in err
    assert len(err.splitlines()) == 1
