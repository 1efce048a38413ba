"""SQLite ledger: local, durable (WAL + synchronous=FULL), append-only by trigger.

Single-flight is enforced with ``BEGIN IMMEDIATE``: the check "no unresolved attempt" and the
PENDING insert happen under SQLite's write lock, so even two processes sharing the file cannot
both begin. Fencing across machines needs the Redis ledger; here the epoch is recorded only.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING

from topup_guard.errors import LedgerError
from topup_guard.ledger.base import Attempt, AttemptState, LedgerBusyError

if TYPE_CHECKING:
    from topup_guard.ledger.timeline import AuditTrail

log = logging.getLogger("topup_guard.ledger")
SCHEMA_VERSION = "1"
_CACHE_SLACK = 86400.0  # seconds of extra history a cached ``since`` read keeps
_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS ledger_events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    attempt_id INTEGER NOT NULL,
    state TEXT NOT NULL,
    wall REAL NOT NULL,
    epoch INTEGER NOT NULL,
    holder TEXT NOT NULL,
    balance_before TEXT,
    expected_amount TEXT,
    credited TEXT,
    evidence TEXT,
    detail TEXT NOT NULL DEFAULT '',
    reason TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS ledger_events_attempt ON ledger_events (attempt_id, seq);
CREATE TRIGGER IF NOT EXISTS ledger_events_no_update BEFORE UPDATE ON ledger_events
BEGIN SELECT RAISE(ABORT, 'the ledger is append-only'); END;
CREATE TRIGGER IF NOT EXISTS ledger_events_no_delete BEFORE DELETE ON ledger_events
BEGIN SELECT RAISE(ABORT, 'the ledger is append-only'); END;
"""

# The latest event of each attempt, joined with the attempt's first event for its creation data.
_ATTEMPTS = """
SELECT f.attempt_id, l.state, f.wall, l.wall, l.epoch, l.holder, f.balance_before,
       f.expected_amount, l.credited, l.evidence, l.detail, f.reason
FROM ledger_events f
JOIN ledger_events l ON l.seq = (
    SELECT MAX(seq) FROM ledger_events x WHERE x.attempt_id = f.attempt_id)
WHERE f.seq = (SELECT MIN(seq) FROM ledger_events y WHERE y.attempt_id = f.attempt_id)
"""


# Filter on the latest state in SQL: a long-lived ledger holds thousands of resolved attempts, and
# the loop asks for the open ones every cycle.
_OPEN_STATES = tuple(s.value for s in AttemptState if s.unresolved)
_OPEN = f"AND l.state IN ({', '.join('?' * len(_OPEN_STATES))})"


def _dec(text: str | None) -> Decimal | None:
    return None if text is None else Decimal(text)


def _row(row: tuple[object, ...]) -> Attempt:
    (aid, state, created, updated, epoch, holder, before, expected, credited, evidence, detail,
     reason) = row  # fmt: skip
    return Attempt(
        attempt_id=int(aid),  # type: ignore[call-overload]
        state=AttemptState(str(state)),
        created_wall=float(created),  # type: ignore[arg-type]
        updated_wall=float(updated),  # type: ignore[arg-type]
        epoch=int(epoch),  # type: ignore[call-overload]
        holder=str(holder),
        balance_before=Decimal(str(before)),
        expected_amount=_dec(expected),  # type: ignore[arg-type]
        credited=_dec(credited),  # type: ignore[arg-type]
        evidence=None if evidence is None else str(evidence),
        detail=str(detail),
        reason=str(reason),
    )


class SqliteLedger:
    """The default ledger at ``TOPUP_GUARD_STATE_PATH``."""

    def __init__(self, path: Path | str, *, account: str = "") -> None:
        self.path = Path(path)
        self._version: int | None = None
        self._checked = False  # data_version read in this step of the event loop
        self._drop_cache()
        self._db = self._open(account)

    def _open(self, account: str) -> sqlite3.Connection:
        where = str(self.path)
        try:
            if str(self.path) != ":memory:":
                self.path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(where, isolation_level=None, timeout=10.0)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            (had_schema,) = db.execute(
                "SELECT COUNT(*) FROM sqlite_master WHERE name = 'ledger_events'"
            ).fetchone()
            db.executescript(_SCHEMA)
            (check,) = db.execute("PRAGMA quick_check").fetchone()
            if check != "ok":
                raise sqlite3.DatabaseError(f"integrity check failed: {check}")
            self._bind(db, account)
        except sqlite3.DatabaseError as exc:
            if "readonly" in str(exc):
                # Not damage: moving the file aside (the advice below) would throw away the
                # history the caps are computed from. Say what is actually wrong.
                raise LedgerError(
                    f"the ledger at {where} is read-only ({exc}); no top-up will happen. Make "
                    "the file and its directory writable by the guard (keep the file: the caps "
                    "are counted from it)"
                ) from None
            raise LedgerError(
                f"the ledger at {where} cannot be used ({exc}); no top-up will happen. "
                "Move the file aside to keep it as evidence, check the account's recent "
                "top-ups in the Vonage dashboard, then start again (a new ledger is created)"
            ) from None
        except OSError as exc:
            raise LedgerError(
                f"the ledger at {where} cannot be opened ({exc.strerror}); no top-up will "
                "happen. Set TOPUP_GUARD_STATE_PATH to a writable path on a volume"
            ) from None
        if not had_schema and where != ":memory:":
            # A new ledger means no history: the hourly/daily caps and the breaker start from
            # zero. Expected on a first start; after a lost volume or a deleted (or emptied)
            # file it is the only trace that the caps were reset, so say it loudly.
            log.warning(
                "ledger_created",
                extra={
                    "path": where,
                    "detail": "new empty ledger: caps and breaker restart from zero "
                    "(expected on the first start only)",
                },
            )
        return db

    @staticmethod
    def _bind(db: sqlite3.Connection, account: str) -> None:
        """A ledger belongs to one account: refuse another account's caps and history."""
        db.execute("INSERT OR IGNORE INTO meta VALUES ('schema', ?)", (SCHEMA_VERSION,))
        if not account:
            return
        row = db.execute("SELECT value FROM meta WHERE key = 'account'").fetchone()
        if row is None:
            db.execute("INSERT INTO meta VALUES ('account', ?)", (account,))
        elif row[0] != account:
            raise sqlite3.DatabaseError(f"it belongs to account {row[0]}, not {account}")

    def _write(self, sql: str, params: tuple[object, ...]) -> None:
        self._drop_cache()
        try:
            self._db.execute(sql, params)
        except sqlite3.Error as exc:
            raise LedgerError(f"ledger write failed: {exc}") from None

    def _attempts(self, where: str = "", params: tuple[object, ...] = ()) -> list[Attempt]:
        try:
            rows = self._db.execute(f"{_ATTEMPTS} {where}", params).fetchall()
        except sqlite3.Error as exc:
            raise LedgerError(f"ledger read failed: {exc}") from None
        return [_row(r) for r in rows]

    async def begin(
        self,
        *,
        balance_before: Decimal,
        expected_amount: Decimal | None,
        reason: str,
        wall: float,
        epoch: int,
        holder: str,
        dry_run: bool = False,
        despite_doubt: bool = False,
    ) -> Attempt:
        state = AttemptState.DRY_RUN if dry_run else AttemptState.PENDING
        try:
            self._drop_cache()
            self._db.execute("BEGIN IMMEDIATE")
            try:
                open_ = [a for a in self._attempts(_OPEN, _OPEN_STATES) if a.state.unresolved]
                if despite_doubt:
                    open_ = [a for a in open_ if a.state is AttemptState.PENDING]
                if open_ and not dry_run:
                    raise LedgerBusyError(
                        f"attempt {open_[0].attempt_id} is still {open_[0].state.value}"
                    )
                (last,) = self._db.execute(
                    "SELECT COALESCE(MAX(attempt_id), 0) FROM ledger_events"
                ).fetchone()
                attempt_id = int(last) + 1
                self._db.execute(
                    "INSERT INTO ledger_events (attempt_id, state, wall, epoch, holder, "
                    "balance_before, expected_amount, reason) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        attempt_id,
                        state.value,
                        wall,
                        epoch,
                        holder,
                        str(balance_before),
                        None if expected_amount is None else str(expected_amount),
                        reason,
                    ),
                )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            raise LedgerError(f"ledger write failed: {exc}") from None
        return self._attempts("AND f.attempt_id = ?", (attempt_id,))[0]

    async def transition(
        self,
        attempt_id: int,
        state: AttemptState,
        *,
        wall: float,
        epoch: int,
        credited: Decimal | None = None,
        evidence: str | None = None,
        detail: str = "",
    ) -> Attempt:
        current = self._attempts("AND f.attempt_id = ?", (attempt_id,))
        if not current:
            raise LedgerError(f"no attempt {attempt_id} in the ledger")
        first = current[0]
        self._write(
            "INSERT INTO ledger_events (attempt_id, state, wall, epoch, holder, balance_before, "
            "expected_amount, credited, evidence, detail, reason) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                attempt_id,
                state.value,
                wall,
                epoch,
                first.holder,
                str(first.balance_before),
                None if first.expected_amount is None else str(first.expected_amount),
                None if credited is None else str(credited),
                evidence,
                detail,
                first.reason,
            ),
        )
        return self._attempts("AND f.attempt_id = ?", (attempt_id,))[0]

    # --- reads, cached between changes ---------------------------------------------------
    # The engine reads the same day of attempts every poll; the queries cost ~0.5 ms with a
    # day's entries. ``PRAGMA data_version`` changes when *another* connection commits (a CLI
    # top-up, a second process), and our own writes drop the cache, so a cached answer is
    # always the answer the database would give.
    # A poll reads the ledger four times in one step of the event loop (no await in between
    # yields): the version is read at the first and trusted until the loop moves on, which is
    # as fresh as reading it then (another process's commit can land a microsecond later either
    # way) and costs one statement a poll instead of four.
    def _fresh(self) -> bool:
        if self._checked:
            return True
        try:
            (version,) = self._db.execute("PRAGMA data_version").fetchone()
        except sqlite3.Error as exc:
            raise LedgerError(f"ledger read failed: {exc}") from None
        try:
            asyncio.get_running_loop().call_soon(self._step_over)
            self._checked = True
        except RuntimeError:  # no loop running: check at every read
            pass
        if version != self._version:
            self._version = version
            self._drop_cache()
            return False
        return True

    def _step_over(self) -> None:
        self._checked = False

    def _drop_cache(self) -> None:
        self._open_cache: list[Attempt] | None = None
        self._since_cache: tuple[float, list[Attempt]] | None = None

    async def unresolved(self) -> list[Attempt]:
        if not self._fresh() or self._open_cache is None:
            rows = self._attempts(f"{_OPEN} ORDER BY f.attempt_id", _OPEN_STATES)
            self._open_cache = [a for a in rows if a.state.unresolved]
        return list(self._open_cache)

    async def since(self, wall: float) -> list[Attempt]:
        cached = self._since_cache if self._fresh() else None
        if cached is None or wall < cached[0]:
            # Read a day more than asked, so the next polls' later ``wall`` hit the cache.
            start = wall - _CACHE_SLACK
            rows = self._attempts("AND f.wall >= ? ORDER BY f.attempt_id", (start,))
            cached = self._since_cache = (start, rows)
        return [a for a in cached[1] if a.created_wall >= wall]

    async def latest(self, limit: int) -> list[Attempt]:
        rows = self._attempts("ORDER BY f.attempt_id DESC LIMIT ?", (limit,))
        return list(reversed(rows))

    async def close(self) -> None:
        self._db.close()


# --- read-only timeline (``topup-guard ledger``, ``explain``, ``check``) ------------------------
# A reader must never change the ledger, create one at a wrong path, or need write access: the
# image runs as a non-root user on a read-only root filesystem, and an operator may inspect a
# copy. So the file is opened through a ``mode=ro`` URI; when even that fails because SQLite
# cannot create the WAL index (``-shm``) in a read-only directory, and no write-ahead log is
# waiting to be checkpointed, ``immutable=1`` reads the file as it is.

_EVENTS = """
SELECT attempt_id, state, wall, epoch, holder, credited, evidence, detail
FROM ledger_events WHERE attempt_id IN ({ids}) ORDER BY seq
"""


def open_read_only(path: Path | str) -> tuple[sqlite3.Connection, str]:
    """A connection that cannot write, and a note on how complete its view is (or "")."""
    where = Path(path)
    if not where.is_file():
        raise LedgerError(
            f"no ledger at {where}: the guard creates it on its first start (is "
            "TOPUP_GUARD_STATE_PATH the guard's own?)"
        )
    uri = where.resolve().as_uri()
    try:
        db = sqlite3.connect(f"{uri}?mode=ro", uri=True, timeout=10.0)
        db.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()
        return db, ""
    except sqlite3.OperationalError as exc:  # cannot open the WAL index: try immutable below
        first = exc
    except sqlite3.DatabaseError as exc:  # not a database, or damaged
        raise LedgerError(f"the ledger at {where} cannot be read ({exc})") from None
    wal = Path(f"{where}-wal")
    note = ""
    if wal.exists() and wal.stat().st_size > 0:
        note = (
            f"read without its write-ahead log ({wal} cannot be used: {first}); the newest "
            "events may be missing"
        )
    try:
        db = sqlite3.connect(f"{uri}?mode=ro&immutable=1", uri=True)
        db.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()
    except sqlite3.Error as exc:
        raise LedgerError(f"the ledger at {where} cannot be read ({exc})") from None
    return db, note


def read_timelines(path: Path | str, *, since_wall: float | None = None) -> AuditTrail:
    # Imported here: ``run`` never reads timelines (the ``ledger`` command does).
    from topup_guard.ledger.timeline import AuditTrail, LedgerEvent, Timeline

    """Every attempt created at or after ``since_wall`` (all if None), oldest first, with its
    events; read-only (``open_read_only``)."""
    db, note = open_read_only(path)
    try:
        where, params = ("AND f.wall >= ?", (since_wall,)) if since_wall is not None else ("", ())
        attempts = [
            _row(r) for r in db.execute(f"{_ATTEMPTS} {where} ORDER BY f.attempt_id", params)
        ]
        events: dict[int, list[LedgerEvent]] = {a.attempt_id: [] for a in attempts}
        if attempts:
            ids = ", ".join(str(a.attempt_id) for a in attempts)  # integers from the ledger itself
            for aid, state, wall, epoch, holder, credited, evidence, detail in db.execute(
                _EVENTS.format(ids=ids)
            ):
                events[int(aid)].append(
                    LedgerEvent(
                        attempt_id=int(aid),
                        state=AttemptState(str(state)),
                        wall=float(wall),
                        epoch=int(epoch),
                        holder=str(holder),
                        credited=_dec(credited),
                        evidence=None if evidence is None else str(evidence),
                        detail=str(detail),
                    )
                )
    except (sqlite3.Error, ValueError, ArithmeticError) as exc:
        why = f"; {note}" if note else ""
        raise LedgerError(f"the ledger at {path} cannot be read ({exc}){why}") from None
    finally:
        db.close()
    timelines = tuple(Timeline(a, tuple(events[a.attempt_id])) for a in attempts)
    return AuditTrail("sqlite", str(path), timelines, note)


def read_only_account(path: Path | str) -> tuple[str | None, str]:
    """The account the ledger at ``path`` belongs to (None if not bound yet) and the result of
    ``PRAGMA quick_check`` ("ok" when healthy), read without writing: what ``SqliteLedger``
    checks on open, for ``topup-guard check``."""
    db, _ = open_read_only(path)
    try:
        row = db.execute("SELECT value FROM meta WHERE key = 'account'").fetchone()
        (check,) = db.execute("PRAGMA quick_check").fetchone()
    except sqlite3.Error as exc:
        raise LedgerError(f"the ledger at {path} cannot be read ({exc})") from None
    finally:
        db.close()
    return (None if row is None else str(row[0])), str(check)
