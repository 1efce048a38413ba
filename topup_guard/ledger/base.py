"""Ledger states and the store protocol.

```
            decide                POST answered 200 + error-code "200"
 (none) ───────────▶ PENDING ──────────────────────────────────────────▶ SUCCEEDED
                        │      4xx that proves nothing was applied
                        ├──────────────────────────────────────────────▶ FAILED
                        │      5xx / timeout / reset / garbled answer
                        ├─────────▶ UNKNOWN ── credit step seen ───────▶ SUCCEEDED (verified)
                        │              └────── settle window passed ───▶ UNCONFIRMED (alert)
                        └ crash: reconciled on start exactly like UNKNOWN
```
PENDING is written and committed *before* the request leaves. A PENDING entry whose request never
left cannot be told from one that did, so both are verified by balance. While any entry is
PENDING (a request may be on the wire), no new top-up may start — enforced inside the store's own
transaction, so two processes on one store cannot both begin. While one is UNKNOWN (the request
is over, its outcome in doubt) a new one may start only when the caller says so
(``despite_doubt``): the guard does when the balance would run dry before the doubt is settled.

Entries are never updated or deleted: each transition appends an event; an attempt's state is its
latest event. Every event carries the fencing epoch of the writer.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum
from typing import Protocol

from topup_guard.errors import LedgerError


class AttemptState(StrEnum):
    PENDING = "pending"
    UNKNOWN = "unknown"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    UNCONFIRMED = "unconfirmed"
    DRY_RUN = "dry_run"  # a top-up the guard would have made; audit only, never sent

    @property
    def unresolved(self) -> bool:
        return self in (AttemptState.PENDING, AttemptState.UNKNOWN)

    @property
    def may_have_charged(self) -> bool:
        """Counts against the caps: money may have left the customer's card."""
        return self in (
            AttemptState.PENDING,
            AttemptState.UNKNOWN,
            AttemptState.SUCCEEDED,
            AttemptState.UNCONFIRMED,
        )


@dataclass(frozen=True, slots=True)
class Attempt:
    """One top-up attempt as of its latest ledger event."""

    attempt_id: int
    state: AttemptState
    created_wall: float
    updated_wall: float
    epoch: int
    holder: str
    balance_before: Decimal
    expected_amount: Decimal | None
    credited: Decimal | None
    evidence: str | None
    detail: str
    reason: str

    @property
    def amount_for_caps(self) -> Decimal | None:
        return self.credited if self.credited is not None else self.expected_amount


class LedgerBusyError(LedgerError):
    """An unresolved attempt exists; a new one may not begin."""


class FencedError(LedgerError):
    """The writer's fencing epoch is stale: another guard holds the lease. Nothing was written."""


class Ledger(Protocol):
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
        """Append a PENDING (or DRY_RUN) entry, durably, or raise LedgerBusyError/FencedError.

        Busy while any attempt is PENDING, or UNKNOWN unless ``despite_doubt``."""

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
        """Append a state change for an attempt (FencedError if the epoch is stale)."""

    async def unresolved(self) -> list[Attempt]:
        """Attempts whose latest state is PENDING or UNKNOWN."""

    async def since(self, wall: float) -> list[Attempt]:
        """Attempts created at or after ``wall`` (Unix seconds), in attempt order."""

    async def latest(self, limit: int) -> list[Attempt]:
        """The newest ``limit`` attempts, oldest first."""

    async def close(self) -> None: ...
