"""The SQLite ledger's read cache never hides a change, ours or another process's."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from pathlib import Path

from topup_guard.ledger import AttemptState, SqliteLedger


async def begin(ledger: SqliteLedger, wall: float) -> int:
    attempt = await ledger.begin(balance_before=Decimal(5), expected_amount=Decimal(50),
                                 reason="test", wall=wall, epoch=0, holder="h")  # fmt: skip
    return attempt.attempt_id


async def test_reads_see_our_own_writes(tmp_path: Path) -> None:
    ledger = SqliteLedger(tmp_path / "l.db", account="k")
    assert await ledger.since(0) == []
    aid = await begin(ledger, 100.0)
    assert [a.state for a in await ledger.unresolved()] == [AttemptState.PENDING]
    await ledger.transition(aid, AttemptState.SUCCEEDED, wall=101.0, epoch=0)
    assert await ledger.unresolved() == []
    assert [a.state for a in await ledger.since(50.0)] == [AttemptState.SUCCEEDED]
    assert await ledger.since(100.5) == []  # a later window is filtered from the cache
    await ledger.close()


async def next_poll() -> None:
    """The guard's next poll runs in a later step of its event loop (it sleeps between polls)."""
    await asyncio.sleep(0)


async def test_reads_see_another_processs_writes(tmp_path: Path) -> None:
    guard = SqliteLedger(tmp_path / "l.db", account="k")
    cli = SqliteLedger(tmp_path / "l.db", account="k")  # e.g. a manual `topup-guard top-up`
    assert await guard.unresolved() == []
    assert await guard.since(0) == []
    aid = await begin(cli, 200.0)
    await next_poll()
    assert [a.attempt_id for a in await guard.unresolved()] == [aid]
    assert [a.attempt_id for a in await guard.since(0)] == [aid]
    await cli.transition(aid, AttemptState.FAILED, wall=201.0, epoch=0)
    await next_poll()
    assert await guard.unresolved() == []
    assert [a.state for a in await guard.since(0)] == [AttemptState.FAILED]
    await cli.close()
    await guard.close()


async def test_one_poll_asks_sqlite_for_the_data_version_once(tmp_path: Path) -> None:
    guard = SqliteLedger(tmp_path / "l.db", account="k")
    asked: list[str] = []
    guard._db.set_trace_callback(lambda sql: asked.append(sql) if "data_version" in sql else None)
    for _ in range(3):  # what a poll reads: since, unresolved, since, unresolved
        await guard.since(0)
        await guard.unresolved()
    assert len(asked) == 1
    await next_poll()
    await guard.since(0)
    assert len(asked) == 2
    await guard.close()


def test_without_a_running_loop_every_read_asks(tmp_path: Path) -> None:
    guard = SqliteLedger(tmp_path / "l.db", account="k")
    asked: list[str] = []
    guard._db.set_trace_callback(lambda sql: asked.append(sql) if "data_version" in sql else None)
    assert guard._fresh() is False  # the first read: nothing cached yet
    assert guard._fresh() is True
    assert len(asked) == 2
