"""The transfer ledger read without writing: every transfer with its events (for ``topup-guard
ledger``, ``explain`` and audits).

Opened exactly like the top-up ledger's read-only view (``ledger.sqlite.open_read_only``): a
``mode=ro`` URI, or ``immutable=1`` on a read-only directory; it never creates a file or a
table. A file without transfer tables (a single-account guard's) holds no transfers.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

from topup_guard.errors import LedgerError
from topup_guard.fleet.transfer_base import TransferEntry, TransferState, reference
from topup_guard.ledger.sqlite import open_read_only


@dataclass(frozen=True, slots=True)
class TransferEvent:
    """One appended event; ``superseded`` when a settled transfer kept its state against it."""

    transfer_id: int
    state: TransferState
    wall: float
    epoch: int
    vonage_id: str | None
    applied_amount: Decimal | None
    detail: str
    superseded: bool


@dataclass(frozen=True, slots=True)
class TransferTimeline:
    entry: TransferEntry  # as of its latest applied event
    events: tuple[TransferEvent, ...]


_EVENTS = (
    "SELECT seq, transfer_id, account, state, created_wall, wall, epoch, begin_epoch, holder, "
    "amount, applied_amount, vonage_id, detail, reason, superseded FROM transfer_events "
    "WHERE created_wall >= ? ORDER BY seq"
)


def read_transfer_timelines(
    path: Path | str, *, since_wall: float | None = None, account: str | None = None
) -> tuple[list[TransferTimeline], str]:
    """Transfers created at or after ``since_wall`` (all if None), oldest first, each with its
    events, and a note on how complete the view is ("" when complete)."""
    db, note = open_read_only(path)
    try:
        has = db.execute(
            "SELECT COUNT(*) FROM sqlite_master WHERE name IN ('transfer_events', 'transfer_meta')"
        ).fetchone()[0]
        if has < 2:
            return [], note
        (uid,) = db.execute("SELECT value FROM transfer_meta WHERE key = 'uid'").fetchone()
        rows = db.execute(_EVENTS, (-1e300 if since_wall is None else since_wall,)).fetchall()
    except sqlite3.Error as exc:
        raise LedgerError(f"the transfer ledger at {path} cannot be read ({exc})") from None
    finally:
        db.close()
    latest: dict[int, TransferEntry] = {}
    events: dict[int, list[TransferEvent]] = {}
    try:
        for (_, tid, acct, state, created, wall, epoch, begin_epoch, holder, amount, applied, vid,
             detail, reason, superseded) in rows:  # fmt: skip
            if account is not None and acct != account:
                continue
            applied_amount = None if applied is None else Decimal(str(applied))
            event = TransferEvent(int(tid), TransferState(state), float(wall), int(epoch),
                                  vid, applied_amount, str(detail), bool(superseded))  # fmt: skip
            events.setdefault(int(tid), []).append(event)
            if not superseded:
                latest[int(tid)] = TransferEntry(
                    transfer_id=int(tid), account=str(acct), amount=Decimal(str(amount)),
                    reference=reference(str(uid), int(tid)), state=TransferState(state),
                    created_wall=float(created), updated_wall=float(wall), epoch=int(epoch),
                    holder=str(holder), vonage_id=vid, detail=str(detail), reason=str(reason),
                    applied_amount=applied_amount, begin_epoch=int(begin_epoch),
                )  # fmt: skip
    except (ValueError, ArithmeticError) as exc:
        raise LedgerError(f"the transfer ledger at {path} is damaged ({exc})") from None
    timelines = [TransferTimeline(latest[t], tuple(events[t])) for t in sorted(latest)]
    return timelines, note
