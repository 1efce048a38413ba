"""The transfer ledger read without writing: the same entries, every event, nothing created."""

from __future__ import annotations

import sqlite3
from decimal import Decimal
from pathlib import Path

from topup_guard.fleet.transfer_ledger import SqliteTransferLedger, TransferState
from topup_guard.fleet.transfer_view import read_transfer_timelines
from topup_guard.ledger.sqlite import SqliteLedger

WALL = 1_800_000_000.0


async def test_every_transfer_with_its_events_as_the_ledger_has_them(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite"
    ledger = SqliteTransferLedger(path)
    a = await ledger.begin("sub00001", Decimal(10), "low", WALL, 0, "me")
    await ledger.transition(a.transfer_id, TransferState.UNKNOWN, wall=WALL + 1, epoch=0)
    await ledger.transition(a.transfer_id, TransferState.SUCCEEDED, wall=WALL + 7, epoch=0,
                            vonage_id="v-1", applied_amount=Decimal(10))  # fmt: skip
    await ledger.transition(a.transfer_id, TransferState.FAILED, wall=WALL + 9, epoch=0)
    b = await ledger.begin("sub00002", Decimal(5), "low", WALL + 60, 0, "me")
    expected = await ledger.latest(10)
    await ledger.close()
    timelines, note = read_transfer_timelines(path)
    assert note == ""
    assert [t.entry for t in timelines] == expected
    states = [(e.state, e.superseded) for e in timelines[0].events]
    assert states == [(TransferState.PENDING, False), (TransferState.UNKNOWN, False),
                      (TransferState.SUCCEEDED, False), (TransferState.FAILED, True)]  # fmt: skip
    later, _ = read_transfer_timelines(path, since_wall=WALL + 30)
    assert [t.entry.transfer_id for t in later] == [b.transfer_id]
    mine, _ = read_transfer_timelines(path, account="sub00001")
    assert [t.entry.transfer_id for t in mine] == [a.transfer_id]


async def test_a_single_account_ledger_has_no_transfers_and_is_left_as_it_was(
    tmp_path: Path,
) -> None:
    path = tmp_path / "state.sqlite"
    topups = SqliteLedger(path, account="primary1")
    await topups.close()
    before = path.read_bytes()
    assert read_transfer_timelines(path) == ([], "")
    assert path.read_bytes() == before
    db = sqlite3.connect(path)
    assert (
        db.execute("SELECT COUNT(*) FROM sqlite_master WHERE name LIKE 'transfer%'").fetchone()[0]
        == 0
    )
    db.close()
