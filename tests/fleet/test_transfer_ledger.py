"""The SQLite transfer ledger: append-only, single-flight per subaccount, fenced, unique ids."""

from __future__ import annotations

import sqlite3
from decimal import Decimal
from pathlib import Path

import pytest

from topup_guard.errors import LedgerError
from topup_guard.fleet.transfer_ledger import (
    SqliteTransferLedger,
    TransferBusyError,
    TransferState,
)
from topup_guard.ledger.base import FencedError
from topup_guard.ledger.sqlite import SqliteLedger

WALL = 1_800_000_000.0
TEN = Decimal(10)


async def begin(ledger: SqliteTransferLedger, account: str = "sub00001", **kw: object):  # type: ignore[no-untyped-def]
    args: dict[str, object] = {"amount": TEN, "reason": "below floor", "wall": WALL, "epoch": 0,
                               "holder": "me"}  # fmt: skip
    args.update(kw)
    return await ledger.begin(account=account, **args)  # type: ignore[arg-type]


async def test_begin_records_pending_with_a_reference_naming_the_entry(
    ledger: SqliteTransferLedger,
) -> None:
    entry = await begin(ledger)
    assert entry.state is TransferState.PENDING
    assert entry.transfer_id == 1
    assert entry.reference == f"tg-{ledger.ledger_uid}-1" == ledger.reference_for(entry)
    assert await ledger.unresolved() == [entry]
    assert await ledger.unresolved("sub00002") == []


async def test_a_second_transfer_to_the_same_account_waits_but_other_accounts_do_not(
    ledger: SqliteTransferLedger,
) -> None:
    await begin(ledger, "sub00001")
    with pytest.raises(TransferBusyError, match="sub00001"):
        await begin(ledger, "sub00001")
    other = await begin(ledger, "sub00002")
    assert other.transfer_id == 2


@pytest.mark.parametrize(
    ("state", "busy"),
    [
        (TransferState.UNKNOWN, True),
        (TransferState.UNCONFIRMED, True),
        (TransferState.SUCCEEDED, False),
        (TransferState.FAILED, False),
    ],
)
async def test_only_a_settled_transfer_frees_the_account(
    ledger: SqliteTransferLedger, state: TransferState, busy: bool
) -> None:
    first = await begin(ledger)
    if state is TransferState.UNCONFIRMED:
        await ledger.transition(first.transfer_id, TransferState.UNKNOWN, wall=WALL, epoch=0)
    await ledger.transition(first.transfer_id, state, wall=WALL + 1, epoch=0)
    if busy:
        with pytest.raises(TransferBusyError):
            await begin(ledger)
    else:
        assert (await begin(ledger)).transfer_id == 2


async def test_despite_unconfirmed_lets_an_operator_fund_past_a_doubt_but_never_past_pending(
    ledger: SqliteTransferLedger,
) -> None:
    first = await begin(ledger)
    with pytest.raises(TransferBusyError):
        await begin(ledger, despite_unconfirmed=True)
    await ledger.transition(first.transfer_id, TransferState.UNKNOWN, wall=WALL, epoch=0)
    await ledger.transition(first.transfer_id, TransferState.UNCONFIRMED, wall=WALL, epoch=0)
    assert (await begin(ledger, despite_unconfirmed=True)).state is TransferState.PENDING


async def test_a_dry_run_is_never_busy_and_never_blocks(ledger: SqliteTransferLedger) -> None:
    await begin(ledger)
    dry = await begin(ledger, dry_run=True)
    assert dry.state is TransferState.DRY_RUN
    assert [e.transfer_id for e in await ledger.unresolved()] == [1]


async def test_events_cannot_be_changed_or_deleted(tmp_path: Path) -> None:
    path = tmp_path / "t.sqlite"
    ledger = SqliteTransferLedger(path)
    await begin(ledger)
    await ledger.close()
    db = sqlite3.connect(path)
    for sql in ("UPDATE transfer_events SET state = 'failed'", "DELETE FROM transfer_events",
                "UPDATE transfer_meta SET value = 'x'", "DELETE FROM transfer_meta"):  # fmt: skip
        with pytest.raises(sqlite3.IntegrityError, match="transfer ledger"):
            db.execute(sql)
    db.close()


async def test_each_transition_is_a_new_event_and_the_entry_is_the_latest(
    ledger: SqliteTransferLedger,
) -> None:
    e = await begin(ledger)
    await ledger.transition(e.transfer_id, TransferState.UNKNOWN, wall=WALL + 1, epoch=0,
                            detail="500")  # fmt: skip
    done = await ledger.transition(
        e.transfer_id, TransferState.SUCCEEDED, wall=WALL + 9, epoch=0, vonage_id="v-1",
        applied_amount=Decimal("10.00"), detail="listed",
    )  # fmt: skip
    assert (done.state, done.vonage_id, done.applied_amount) == (
        TransferState.SUCCEEDED, "v-1", Decimal("10.00"))  # fmt: skip
    assert (done.created_wall, done.updated_wall) == (WALL, WALL + 9)
    (events,) = ledger._db.execute("SELECT COUNT(*) FROM transfer_events").fetchone()
    assert events == 3


async def test_a_settled_transfer_stays_settled_and_the_late_word_is_kept_aside(
    ledger: SqliteTransferLedger,
) -> None:
    e = await begin(ledger)
    await ledger.transition(e.transfer_id, TransferState.SUCCEEDED, wall=WALL, epoch=0)
    kept = await ledger.transition(e.transfer_id, TransferState.FAILED, wall=WALL, epoch=0)
    assert kept.state is TransferState.SUCCEEDED
    assert (await ledger.entry(e.transfer_id)).state is TransferState.SUCCEEDED  # type: ignore[union-attr]
    (superseded,) = ledger._db.execute(
        "SELECT COUNT(*) FROM transfer_events WHERE superseded = 1"
    ).fetchone()
    assert superseded == 1


async def test_unconfirmed_is_settled_by_a_later_listing(ledger: SqliteTransferLedger) -> None:
    e = await begin(ledger)
    for state in (TransferState.UNKNOWN, TransferState.UNCONFIRMED, TransferState.FAILED):
        e = await ledger.transition(e.transfer_id, state, wall=WALL, epoch=0)
    assert e.state is TransferState.FAILED
    assert await ledger.in_doubt() == []


async def test_a_stale_epoch_cannot_begin_and_cannot_rewrite_another_tenures_entry(
    ledger: SqliteTransferLedger,
) -> None:
    old = await begin(ledger, "sub00001", epoch=3, holder="old")
    await begin(ledger, "sub00002", epoch=4, holder="new")  # a new tenure wrote
    with pytest.raises(FencedError):
        await begin(ledger, "sub00003", epoch=3, holder="old")
    # The old tenure may still say what became of its own POST ...
    moved = await ledger.transition(old.transfer_id, TransferState.UNKNOWN, wall=WALL, epoch=3)
    assert moved.state is TransferState.UNKNOWN
    second = await ledger.latest(1)
    with pytest.raises(FencedError):  # ... but not of the new tenure's
        await ledger.transition(second[0].transfer_id, TransferState.FAILED, wall=WALL, epoch=3)
    # and the current tenure settles what the old one left.
    done = await ledger.transition(old.transfer_id, TransferState.FAILED, wall=WALL, epoch=4)
    assert done.state is TransferState.FAILED


async def test_the_ledger_uid_is_kept_and_two_stores_never_share_a_reference(
    tmp_path: Path,
) -> None:
    a = SqliteTransferLedger(tmp_path / "a.sqlite")
    b = SqliteTransferLedger(tmp_path / "b.sqlite")
    ea, eb = await begin(a), await begin(b)
    assert ea.transfer_id == eb.transfer_id == 1
    assert ea.reference != eb.reference
    uid = a.ledger_uid
    await a.close()
    await b.close()
    again = SqliteTransferLedger(tmp_path / "a.sqlite")
    assert again.ledger_uid == uid
    assert (await again.entry(1)).reference == ea.reference  # type: ignore[union-attr]
    await again.close()
    # A lost and recreated store starts again at id 1, with a reference never used before.
    (tmp_path / "a.sqlite").unlink()
    fresh = SqliteTransferLedger(tmp_path / "a.sqlite")
    assert (await begin(fresh)).reference not in {ea.reference, eb.reference}
    await fresh.close()


async def test_two_processes_sharing_the_file_cannot_both_begin_for_one_account(
    tmp_path: Path,
) -> None:
    path = tmp_path / "shared.sqlite"
    one, two = SqliteTransferLedger(path), SqliteTransferLedger(path)
    assert one.ledger_uid == two.ledger_uid
    await begin(one)
    with pytest.raises(TransferBusyError):
        await begin(two)
    assert (await begin(two, "sub00002")).transfer_id == 2
    await one.close()
    await two.close()


async def test_it_shares_a_file_with_the_top_up_ledger_without_touching_it(
    tmp_path: Path,
) -> None:
    path = tmp_path / "state.sqlite"
    topups = SqliteLedger(path, account="primary1")
    transfers = SqliteTransferLedger(path)
    await topups.begin(balance_before=Decimal(5), expected_amount=Decimal(50), reason="low",
                       wall=WALL, epoch=0, holder="me")  # fmt: skip
    await begin(transfers)
    assert [a.attempt_id for a in await topups.unresolved()] == [1]
    assert [e.transfer_id for e in await transfers.unresolved()] == [1]
    await topups.close()
    await transfers.close()
    reopened = SqliteLedger(path, account="primary1")  # its own checks still pass
    await reopened.close()


async def test_reads_by_time_and_by_account(ledger: SqliteTransferLedger) -> None:
    for i, account in enumerate(("a", "b", "a", "c")):
        e = await begin(ledger, account, wall=WALL + i)
        await ledger.transition(e.transfer_id, TransferState.SUCCEEDED, wall=WALL + i, epoch=0)
    assert [e.transfer_id for e in await ledger.since(WALL + 1)] == [2, 3, 4]
    assert [e.transfer_id for e in await ledger.since(WALL + 1, "a")] == [3]
    assert [e.transfer_id for e in await ledger.latest(2)] == [3, 4]
    assert [e.transfer_id for e in await ledger.latest(5, "a")] == [1, 3]
    assert await ledger.latest(0) == []


async def test_a_damaged_heads_index_is_rebuilt_from_the_events(tmp_path: Path) -> None:
    path = tmp_path / "t.sqlite"
    ledger = SqliteTransferLedger(path)
    e = await begin(ledger)
    await ledger.transition(e.transfer_id, TransferState.UNKNOWN, wall=WALL, epoch=0)
    await ledger.close()
    db = sqlite3.connect(path)
    db.execute("DELETE FROM transfer_heads")
    db.commit()
    db.close()
    again = SqliteTransferLedger(path)
    assert [x.state for x in await again.unresolved()] == [TransferState.UNKNOWN]
    await again.close()


async def test_a_file_that_is_not_a_database_is_refused_with_what_to_do(tmp_path: Path) -> None:
    path = tmp_path / "t.sqlite"
    path.write_bytes(b"not a database" * 100)
    with pytest.raises(LedgerError, match="Move the file aside"):
        SqliteTransferLedger(path)


async def test_nonsense_amounts_and_backward_states_are_refused(
    ledger: SqliteTransferLedger,
) -> None:
    for amount in (Decimal(0), Decimal(-1), Decimal("NaN")):
        with pytest.raises(ValueError, match="amount"):
            await begin(ledger, amount=amount)
    e = await begin(ledger)
    with pytest.raises(ValueError, match="pending"):
        await ledger.transition(e.transfer_id, TransferState.PENDING, wall=WALL, epoch=0)
    with pytest.raises(LedgerError, match="no transfer 99"):
        await ledger.transition(99, TransferState.FAILED, wall=WALL, epoch=0)


async def test_cached_reads_always_match_the_database_across_two_connections(
    tmp_path: Path,
) -> None:
    path = tmp_path / "shared.sqlite"
    one, two = SqliteTransferLedger(path), SqliteTransferLedger(path)

    async def agree(wall: float) -> None:
        truth = one._select("WHERE h.created_wall >= ? ORDER BY h.transfer_id", (wall,))
        assert await one.since(wall) == truth
        assert await two.since(wall) == truth
        assert await two.since(wall, "b") == [e for e in truth if e.account == "b"]

    for i in range(12):
        writer = (one, two)[i % 2]
        e = await begin(writer, "ab"[i % 3 % 2], wall=WALL + i * 100)
        await agree(WALL)
        await writer.transition(e.transfer_id, TransferState.FAILED, wall=WALL, epoch=0)
        await agree(WALL + 50 * i)
    await begin(two, "c", wall=WALL - 10 * 86400)  # a wall clock far behind: cache dropped
    await agree(WALL - 20 * 86400)
    await agree(WALL + 3 * 86400)  # far ahead of the cache: read afresh
    await one.close()
    await two.close()
