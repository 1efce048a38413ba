"""The transfer ledger read without writing: every transfer with its events (for ``topup-guard
ledger``, ``explain`` and audits), from SQLite or from the shared Redis.

SQLite is opened exactly like the top-up ledger's read-only view (``ledger.sqlite.open_read_only``):
a ``mode=ro`` URI, or ``immutable=1`` on a read-only directory; it never creates a file or a
table. A file without transfer tables (a single-account guard's) holds no transfers. Redis is
read with GET/HGETALL/XRANGE only (never ``RedisTransferLedger.open``, which creates the uid):
no ``transfer-meta`` key means no guard of this account ever made a transfer.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

from topup_guard.errors import LedgerError
from topup_guard.fleet.transfer_base import TransferEntry, TransferState, reference
from topup_guard.ledger.sqlite import open_read_only

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from topup_guard.ledger.redis_lease import RedisKeys


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


async def read_redis_transfer_timelines(
    client: Redis, keys: RedisKeys, *, since_wall: float | None = None, account: str | None = None
) -> list[TransferTimeline]:
    """The shared ledger's transfers created at or after ``since_wall`` (all if None), oldest
    first, each with its events; reads only. Raises LedgerError when Redis cannot be read."""
    from topup_guard.fleet.transfer_redis import _Keys
    from topup_guard.ledger.redis_lease import REDIS_DOWN

    k = _Keys(keys)
    low = "-inf" if since_wall is None else repr(since_wall)
    try:
        async with client.pipeline(transaction=True) as pipe:
            pipe.get(k.meta)
            pipe.zrangebyscore(k.created, low, "+inf")
            pipe.hgetall(k.transfers)
            pipe.xrange(k.events, "-", "+")
            uid, ids, heads, stream = await pipe.execute()
    except REDIS_DOWN as exc:
        raise LedgerError(
            f"the shared transfer ledger in Redis cannot be read ({type(exc).__name__})"
        ) from None
    if uid is None:
        return []  # no guard of this account has made (or begun) a transfer
    try:
        chosen = sorted(int(i) for i in ids)
        entries = {i: _redis_entry(str(uid), json.loads(heads[str(i)])) for i in chosen
                   if str(i) in heads}  # fmt: skip
        wanted = {i for i, e in entries.items() if account is None or e.account == account}
        events: dict[int, list[TransferEvent]] = {i: [] for i in wanted}
        for _, fields in stream:
            tid = int(fields["transfer"])
            if tid in events:
                events[tid].append(_redis_event(tid, json.loads(fields["event"])))
    except (KeyError, ValueError, TypeError, ArithmeticError) as exc:
        raise LedgerError(
            f"the shared transfer ledger in Redis is damaged ({type(exc).__name__}: {exc})"
        ) from None
    return [TransferTimeline(entries[i], tuple(events[i])) for i in sorted(wanted)]


def _redis_entry(uid: str, e: dict[str, Any]) -> TransferEntry:
    tid = int(e["transfer_id"])
    applied = e.get("applied_amount")
    return TransferEntry(
        transfer_id=tid, account=str(e["account"]), amount=Decimal(e["amount"]),
        reference=reference(uid, tid), state=TransferState(e["state"]),
        created_wall=float(e["created_wall"]), updated_wall=float(e["updated_wall"]),
        epoch=int(e["epoch"]), holder=str(e["holder"]), vonage_id=e.get("vonage_id"),
        detail=str(e.get("detail") or ""), reason=str(e.get("reason") or ""),
        applied_amount=None if applied is None else Decimal(applied),
        begin_epoch=int(e["begin_epoch"]),
    )  # fmt: skip


def _redis_event(tid: int, e: dict[str, Any]) -> TransferEvent:
    """A stream entry: the whole entry as of that event, or a refused patch (``superseded``)."""
    applied = e.get("applied_amount")
    return TransferEvent(
        transfer_id=tid, state=TransferState(e["state"]), wall=float(e["updated_wall"]),
        epoch=int(e["epoch"]), vonage_id=e.get("vonage_id"),
        applied_amount=None if applied is None else Decimal(applied),
        detail=str(e.get("detail") or ""), superseded=e.get("superseded") == "true",
    )  # fmt: skip
