"""The SQLite ledger's read cache never hides a change, ours or another process's."""

from __future__ import annotations

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


async def test_reads_see_another_processs_writes(tmp_path: Path) -> None:
    guard = SqliteLedger(tmp_path / "l.db", account="k")
    cli = SqliteLedger(tmp_path / "l.db", account="k")  # e.g. a manual `topup-guard top-up`
    assert await guard.unresolved() == []
    assert await guard.since(0) == []
    aid = await begin(cli, 200.0)
    assert [a.attempt_id for a in await guard.unresolved()] == [aid]
    assert [a.attempt_id for a in await guard.since(0)] == [aid]
    await cli.transition(aid, AttemptState.FAILED, wall=201.0, epoch=0)
    assert await guard.unresolved() == []
    assert [a.state for a in await guard.since(0)] == [AttemptState.FAILED]
    await cli.close()
    await guard.close()
