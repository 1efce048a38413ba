"""The audit trail as a reader sees it: each attempt with every event it went through, in order.

Both stores append one event per transition and never change one (``base``); this module holds
the shapes their read-only timeline readers (``sqlite.read_timelines``,
``redis.read_timelines``) return, so ``topup-guard ledger`` and ``explain`` show the same thing
whichever store the configuration selects.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from topup_guard.ledger.base import Attempt, AttemptState


@dataclass(frozen=True, slots=True)
class LedgerEvent:
    """One appended event: a state the attempt entered, when, by whom, on what evidence."""

    attempt_id: int
    state: AttemptState
    wall: float
    epoch: int
    holder: str
    credited: Decimal | None
    evidence: str | None
    detail: str
    superseded: bool = False
    """Redis only: a racing guard's event that arrived after the attempt was resolved (kept for
    the audit trail, not applied)."""


@dataclass(frozen=True, slots=True)
class Timeline:
    """An attempt as of its latest applied event, and every event that led there."""

    attempt: Attempt
    events: tuple[LedgerEvent, ...]


@dataclass(frozen=True, slots=True)
class AuditTrail:
    """What a read of the ledger found: the attempts and where they were read from."""

    store: str
    """``sqlite`` or ``redis``."""
    location: str
    """The SQLite file, or the Redis key prefix (never the Redis URL: it may hold a password)."""
    timelines: tuple[Timeline, ...]
    note: str = ""
    """Anything the reader should know about how complete the read was."""
