"""The append-only ledger of balance transfers to subaccounts (SQLite), single-flight per account.

```
          begin              POST answered with a transfer
 (none) ────────▶ PENDING ─────────────────────────────────▶ SUCCEEDED
                     │      definite refusal (403/422/401/404)
                     ├─────────────────────────────────────▶ FAILED
                     │      5xx / timeout / reset / garbled answer / crash
                     └──▶ UNKNOWN ── listing shows the reference ──▶ SUCCEEDED
                             ├────── listing ≥ 5 s later lacks it ─▶ FAILED
                             └────── settle window passed ─────────▶ UNCONFIRMED ─▶ SUCCEEDED |
                                                                                    FAILED
```
Unlike a top-up, a transfer carries a ``reference`` and can be listed, so whether it happened is a
question Vonage answers: an UNCONFIRMED entry (the listing failed for the whole settle window) is
still settled by the first listing that works.

Single-flight per account: ``begin`` refuses while *that* account has an entry PENDING, UNKNOWN
or UNCONFIRMED (the last unless ``despite_unconfirmed``) — checked and written under SQLite's
write lock (``BEGIN IMMEDIATE``), so two processes on one file cannot both begin. Other accounts
are never blocked.

References: ``tg-<ledger_uid>-<transfer_id>``. ``ledger_uid`` is random, made once when the
store is created and kept in it, so a new (or lost and recreated) store never repeats a
reference an old one used, and two stores never share one.

Fencing: every event carries the writer's epoch. ``begin`` is refused (``FencedError``) for an
epoch below the highest this store has seen; ``transition`` is accepted from the tenure that
began the entry (it may have moved the money after losing its lease and must be able to say so)
or from an epoch at least the highest seen (the new holder settling). Across machines the
coordinator's lease is the fence; this check stops a deposed writer sharing the file.

Storage: ``transfer_events`` is append-only (triggers refuse UPDATE and DELETE); every row is
the whole entry as of that event. ``transfer_heads`` is an index (transfer id -> its latest
event), written in the same transaction and rebuilt from the events on open if it disagrees, so
the loop's per-cycle ``unresolved()`` reads the open entries only, not a month of history.

The file: the tables are prefixed ``transfer_``, so this ledger may share the top-up ledger's
file (``TOPUP_GUARD_STATE_PATH``) — the recommended setup: one volume, one backup, and a file
lost or restored takes both histories (and so both sets of caps) with it, never one alone.
Writes of both ledgers then serialise on one lock; each holds it for a millisecond.
"""

from __future__ import annotations

import logging
import secrets
import sqlite3
from decimal import Decimal
from pathlib import Path

from topup_guard.errors import LedgerError
from topup_guard.fleet.transfer_base import (
    TransferBusyError,
    TransferEntry,
    TransferLedger,
    TransferState,
    may_move,
    reference,
)
from topup_guard.ledger.base import FencedError

__all__ = [
    "SqliteTransferLedger",
    "TransferBusyError",
    "TransferEntry",
    "TransferLedger",
    "TransferState",
    "reference",
]
log = logging.getLogger("topup_guard.fleet.transfer_ledger")
_CACHE_SLACK = 86400.0  # seconds of extra history a cached ``since`` keeps

_SCHEMA = """
CREATE TABLE IF NOT EXISTS transfer_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS transfer_events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    transfer_id INTEGER NOT NULL,
    account TEXT NOT NULL,
    state TEXT NOT NULL,
    created_wall REAL NOT NULL,
    wall REAL NOT NULL,
    epoch INTEGER NOT NULL,
    begin_epoch INTEGER NOT NULL,
    holder TEXT NOT NULL,
    amount TEXT NOT NULL,
    applied_amount TEXT,
    vonage_id TEXT,
    detail TEXT NOT NULL DEFAULT '',
    reason TEXT NOT NULL DEFAULT '',
    superseded INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS transfer_events_id ON transfer_events (transfer_id, seq);
CREATE INDEX IF NOT EXISTS transfer_events_epoch ON transfer_events (epoch);
CREATE TABLE IF NOT EXISTS transfer_heads (
    transfer_id INTEGER PRIMARY KEY,
    account TEXT NOT NULL,
    state TEXT NOT NULL,
    created_wall REAL NOT NULL,
    last_seq INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS transfer_heads_state ON transfer_heads (state, account);
CREATE INDEX IF NOT EXISTS transfer_heads_created ON transfer_heads (created_wall);
CREATE TRIGGER IF NOT EXISTS transfer_events_no_update BEFORE UPDATE ON transfer_events
BEGIN SELECT RAISE(ABORT, 'the transfer ledger is append-only'); END;
CREATE TRIGGER IF NOT EXISTS transfer_events_no_delete BEFORE DELETE ON transfer_events
BEGIN SELECT RAISE(ABORT, 'the transfer ledger is append-only'); END;
CREATE TRIGGER IF NOT EXISTS transfer_meta_no_update BEFORE UPDATE ON transfer_meta
BEGIN SELECT RAISE(ABORT, 'the transfer ledger identity never changes'); END;
CREATE TRIGGER IF NOT EXISTS transfer_meta_no_delete BEFORE DELETE ON transfer_meta
BEGIN SELECT RAISE(ABORT, 'the transfer ledger identity never changes'); END;
"""
_COLUMNS = (
    "transfer_id, account, state, created_wall, wall, epoch, begin_epoch, holder, amount, "
    "applied_amount, vonage_id, detail, reason"
)
_SELECT = f"SELECT {', '.join('e.' + c.strip() for c in _COLUMNS.split(','))} " + (
    "FROM transfer_heads h JOIN transfer_events e ON e.seq = h.last_seq"
)
_DOUBT = tuple(s.value for s in TransferState if s.in_doubt)
_OPEN = tuple(s.value for s in TransferState if s.unresolved)


def _dec(text: object) -> Decimal | None:
    return None if text is None else Decimal(str(text))


class SqliteTransferLedger:
    """The transfer ledger in a SQLite file (WAL, synchronous=FULL)."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self._db = self._open()
        self._version: int | None = None
        self._cache: dict[int, TransferEntry] | None = None  # created at or after _cache_start
        self._cache_start = 0.0
        row = self._db.execute("SELECT value FROM transfer_meta WHERE key = 'uid'").fetchone()
        self._uid = str(row[0])

    @property
    def ledger_uid(self) -> str:
        return self._uid

    def reference_for(self, entry: TransferEntry) -> str:
        return reference(self._uid, entry.transfer_id)

    def _open(self) -> sqlite3.Connection:
        where = str(self.path)
        try:
            if where != ":memory:":
                self.path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(where, isolation_level=None, timeout=10.0)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            db.executescript(_SCHEMA)
            # 40 random bits, made once: a recreated store gets a new one (new references).
            db.execute(
                "INSERT OR IGNORE INTO transfer_meta VALUES ('uid', ?)", (secrets.token_hex(5),)
            )
            self._repair_heads(db)
        except sqlite3.DatabaseError as exc:
            raise LedgerError(
                f"the transfer ledger at {where} cannot be used ({exc}); no transfer will "
                "happen. Move the file aside to keep it as evidence, check the recent balance "
                "transfers in the Vonage dashboard, then start again"
            ) from None
        except OSError as exc:
            raise LedgerError(
                f"the transfer ledger at {where} cannot be opened ({exc.strerror}); no "
                "transfer will happen"
            ) from None
        return db

    @staticmethod
    def _repair_heads(db: sqlite3.Connection) -> None:
        """Rebuild the heads index from the events if they disagree (the events are the truth)."""
        (distinct,) = db.execute(
            "SELECT COUNT(DISTINCT transfer_id) FROM transfer_events"
        ).fetchone()
        (heads,) = db.execute("SELECT COUNT(*) FROM transfer_heads").fetchone()
        if distinct == heads:
            return
        db.execute("BEGIN IMMEDIATE")
        try:
            db.execute("DELETE FROM transfer_heads")
            db.execute(
                "INSERT INTO transfer_heads SELECT e.transfer_id, e.account, e.state, "
                "e.created_wall, e.seq FROM transfer_events e WHERE e.seq = (SELECT MAX(seq) "
                "FROM transfer_events x WHERE x.transfer_id = e.transfer_id AND x.superseded = 0)"
            )
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        log.warning("transfer_ledger_heads_rebuilt", extra={"transfers": distinct})

    def _entry(self, row: tuple[object, ...]) -> TransferEntry:
        (tid, account, state, created, wall, epoch, begin_epoch, holder, amount, applied, vid,
         detail, reason) = row  # fmt: skip
        transfer_id = int(str(tid))
        return TransferEntry(
            transfer_id=transfer_id,
            account=str(account),
            amount=Decimal(str(amount)),
            reference=reference(self._uid, transfer_id),
            state=TransferState(str(state)),
            created_wall=float(str(created)),
            updated_wall=float(str(wall)),
            epoch=int(str(epoch)),
            holder=str(holder),
            vonage_id=None if vid is None else str(vid),
            detail=str(detail),
            reason=str(reason),
            applied_amount=_dec(applied),
            begin_epoch=int(str(begin_epoch)),
        )

    def _select(self, where: str = "", params: tuple[object, ...] = ()) -> list[TransferEntry]:
        try:
            rows = self._db.execute(f"{_SELECT} {where}", params).fetchall()
        except sqlite3.Error as exc:
            raise LedgerError(f"transfer ledger read failed: {exc}") from None
        return [self._entry(r) for r in rows]

    def _append(self, e: TransferEntry, *, superseded: bool = False) -> None:
        """Insert one event row (inside the caller's transaction) and move the head."""
        cur = self._db.execute(
            f"INSERT INTO transfer_events ({_COLUMNS}, superseded) "  # noqa: S608 - constants
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (e.transfer_id, e.account, e.state.value, e.created_wall, e.updated_wall, e.epoch,
             e.begin_epoch, e.holder, str(e.amount),
             None if e.applied_amount is None else str(e.applied_amount), e.vonage_id, e.detail,
             e.reason, 1 if superseded else 0),
        )  # fmt: skip
        if not superseded:
            self._db.execute(
                "INSERT OR REPLACE INTO transfer_heads VALUES (?, ?, ?, ?, ?)",
                (e.transfer_id, e.account, e.state.value, e.created_wall, cur.lastrowid),
            )

    def _max_epoch(self) -> int:
        (top,) = self._db.execute("SELECT COALESCE(MAX(epoch), 0) FROM transfer_events").fetchone()
        return int(top)

    async def begin(
        self,
        account: str,
        amount: Decimal,
        reason: str,
        wall: float,
        epoch: int,
        holder: str,
        dry_run: bool = False,
        despite_unconfirmed: bool = False,
    ) -> TransferEntry:
        if not account:
            raise ValueError("account is required")
        if not amount.is_finite() or amount <= 0:
            raise ValueError("amount must be positive")
        try:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                top = self._max_epoch()
                if epoch < top:
                    raise FencedError(
                        f"epoch {epoch} of {holder} is older than epoch {top} in the transfer "
                        "ledger; nothing was written"
                    )
                if not dry_run:
                    blocking = _OPEN if despite_unconfirmed else _DOUBT
                    marks = ", ".join("?" * len(blocking))
                    busy = self._select(
                        f"WHERE h.account = ? AND h.state IN ({marks}) ORDER BY h.transfer_id",
                        (account, *blocking),
                    )
                    if busy:
                        raise TransferBusyError(
                            f"transfer {busy[0].transfer_id} to {account} is still "
                            f"{busy[0].state.value}"
                        )
                (last,) = self._db.execute(
                    "SELECT COALESCE(MAX(transfer_id), 0) FROM transfer_heads"
                ).fetchone()
                tid = int(last) + 1
                state = TransferState.DRY_RUN if dry_run else TransferState.PENDING
                entry = TransferEntry(
                    transfer_id=tid,
                    account=account,
                    amount=amount,
                    reference=reference(self._uid, tid),
                    state=state,
                    created_wall=wall,
                    updated_wall=wall,
                    epoch=epoch,
                    holder=holder,
                    vonage_id=None,
                    detail="",
                    reason=reason,
                    begin_epoch=epoch,
                )
                self._append(entry)
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            raise LedgerError(f"transfer ledger write failed: {exc}") from None
        self._remember(entry)
        return entry

    async def transition(
        self,
        transfer_id: int,
        state: TransferState,
        *,
        wall: float,
        epoch: int,
        vonage_id: str | None = None,
        applied_amount: Decimal | None = None,
        detail: str = "",
    ) -> TransferEntry:
        if state in (TransferState.PENDING, TransferState.DRY_RUN):
            raise ValueError(f"an entry cannot return to {state.value}")
        try:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                now = self._select("WHERE h.transfer_id = ?", (transfer_id,))
                if not now:
                    raise LedgerError(f"no transfer {transfer_id} in the ledger")
                cur = now[0]
                top = self._max_epoch()
                if epoch != cur.begin_epoch and epoch < top:
                    raise FencedError(
                        f"epoch {epoch} neither began transfer {transfer_id} nor is current "
                        f"(epoch {top}); nothing was written"
                    )
                new = TransferEntry(
                    transfer_id=transfer_id,
                    account=cur.account,
                    amount=cur.amount,
                    reference=cur.reference,
                    state=state,
                    created_wall=cur.created_wall,
                    updated_wall=wall,
                    epoch=epoch,
                    holder=cur.holder,
                    vonage_id=vonage_id if vonage_id is not None else cur.vonage_id,
                    detail=detail,
                    reason=cur.reason,
                    applied_amount=applied_amount
                    if applied_amount is not None
                    else cur.applied_amount,
                    begin_epoch=cur.begin_epoch,
                )
                kept = not may_move(cur.state, state)
                self._append(new, superseded=kept)
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            raise LedgerError(f"transfer ledger write failed: {exc}") from None
        if kept:
            log.warning(
                "transfer_transition_superseded",
                extra={
                    "account": cur.account,
                    "transfer_id": transfer_id,
                    "state": cur.state.value,
                    "refused_state": state.value,
                    "detail": "the transfer was already settled; kept as recorded",
                },
            )
            return cur
        self._remember(new)
        return new

    async def entry(self, transfer_id: int) -> TransferEntry | None:
        found = self._select("WHERE h.transfer_id = ?", (transfer_id,))
        return found[0] if found else None

    def _by_states(self, states: tuple[str, ...], account: str | None) -> list[TransferEntry]:
        marks = ", ".join("?" * len(states))
        where = f"WHERE h.state IN ({marks})"
        params: tuple[object, ...] = states
        if account is not None:
            where, params = where + " AND h.account = ?", (*params, account)
        return self._select(where + " ORDER BY h.transfer_id", params)

    async def unresolved(self, account: str | None = None) -> list[TransferEntry]:
        return self._by_states(_OPEN, account)

    async def in_doubt(self, account: str | None = None) -> list[TransferEntry]:
        return self._by_states(_DOUBT, account)

    # --- ``since``, cached between changes ----------------------------------------------
    # The fleet loop reads the last day of transfers every cycle for the caps (3,000 entries
    # cost ~20 ms to read and build). Our own writes update the cache in place; ``PRAGMA
    # data_version`` changes when *another* connection commits, and then it is read afresh, so a
    # cached answer is always the answer the database would give.
    def _fresh(self) -> bool:
        try:
            (version,) = self._db.execute("PRAGMA data_version").fetchone()
        except sqlite3.Error as exc:
            raise LedgerError(f"transfer ledger read failed: {exc}") from None
        if version != self._version:
            self._version, self._cache = version, None
            return False
        return True

    def _remember(self, entry: TransferEntry) -> None:
        if self._cache is None:
            return
        if entry.created_wall >= self._cache_start:
            self._cache[entry.transfer_id] = entry  # new ids come last: id order is kept
        else:
            self._cache = None  # created "before" the cache (the wall clock went back)

    async def since(self, wall: float, account: str | None = None) -> list[TransferEntry]:
        fresh = self._fresh()
        if (
            not fresh
            or self._cache is None
            or not (self._cache_start <= wall <= self._cache_start + 2 * _CACHE_SLACK)
        ):
            start = wall - _CACHE_SLACK  # a day more than asked: later cycles hit the cache
            rows = self._select("WHERE h.created_wall >= ? ORDER BY h.transfer_id", (start,))
            self._cache, self._cache_start = {e.transfer_id: e for e in rows}, start
        return [
            e
            for e in self._cache.values()
            if e.created_wall >= wall and (account is None or e.account == account)
        ]

    async def latest(self, limit: int, account: str | None = None) -> list[TransferEntry]:
        if limit <= 0:
            return []
        if account is None:
            rows = self._select("ORDER BY h.transfer_id DESC LIMIT ?", (limit,))
        else:
            rows = self._select(
                "WHERE h.account = ? ORDER BY h.transfer_id DESC LIMIT ?", (account, limit)
            )
        return list(reversed(rows))

    async def close(self) -> None:
        self._db.close()
