"""Transfer ledger types: the states, one entry, the store protocol and the settling rule.

The storage and its guarantees are described in ``fleet/transfer_ledger.py``.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum
from typing import Protocol

from topup_guard.ledger.base import LedgerBusyError


class TransferState(StrEnum):
    PENDING = "pending"
    UNKNOWN = "unknown"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    UNCONFIRMED = "unconfirmed"
    DRY_RUN = "dry_run"  # a transfer the guard would have made; audit only, never sent

    @property
    def unresolved(self) -> bool:
        """A request may be on the wire, or its outcome is still to be settled."""
        return self in (TransferState.PENDING, TransferState.UNKNOWN)

    @property
    def in_doubt(self) -> bool:
        """Not yet proved either way: ``settle_open`` keeps asking the listing."""
        return self.unresolved or self is TransferState.UNCONFIRMED

    @property
    def counts(self) -> bool:
        """Counts against the caps: the money may have moved."""
        return self in (
            TransferState.PENDING,
            TransferState.UNKNOWN,
            TransferState.SUCCEEDED,
            TransferState.UNCONFIRMED,
        )


@dataclass(frozen=True, slots=True)
class TransferEntry:
    """One transfer as of its latest ledger event."""

    transfer_id: int
    account: str  # the subaccount's API key
    amount: Decimal  # the amount asked for
    reference: str
    state: TransferState
    created_wall: float
    updated_wall: float
    epoch: int  # of the latest event's writer
    holder: str  # who began it
    vonage_id: str | None
    detail: str
    reason: str
    applied_amount: Decimal | None = None  # what Vonage reports it moved, once known
    begin_epoch: int = 0

    @property
    def amount_for_caps(self) -> Decimal:
        """The largest figure known: never undercount money that may have moved."""
        return max(self.amount, self.applied_amount or Decimal(0))


class TransferBusyError(LedgerBusyError):
    """The account has a transfer in doubt; a new one may not begin."""


class TransferLedger(Protocol):
    @property
    def ledger_uid(self) -> str: ...

    def reference_for(self, entry: TransferEntry) -> str: ...

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
        """Append a PENDING (or DRY_RUN) entry durably, or raise TransferBusyError/FencedError."""

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
        """Append a state change (FencedError if the epoch is stale). A final state stays final
        (the entry is returned as recorded), except UNCONFIRMED, which a listing may settle."""

    async def entry(self, transfer_id: int) -> TransferEntry | None: ...

    async def unresolved(self, account: str | None = None) -> list[TransferEntry]:
        """PENDING or UNKNOWN entries, in id order."""

    async def in_doubt(self, account: str | None = None) -> list[TransferEntry]:
        """PENDING, UNKNOWN or UNCONFIRMED entries, in id order."""

    async def since(self, wall: float, account: str | None = None) -> list[TransferEntry]:
        """Entries created at or after ``wall``, in id order."""

    async def latest(self, limit: int, account: str | None = None) -> list[TransferEntry]:
        """The newest ``limit`` entries, oldest first."""

    async def close(self) -> None: ...


def reference(ledger_uid: str, transfer_id: int) -> str:
    return f"tg-{ledger_uid}-{transfer_id}"


def may_move(old: TransferState, new: TransferState) -> bool:
    """Open entries move freely; a final one stays (a racer's late word is kept as superseded),
    except that an UNCONFIRMED one is settled by a listing, and a SUCCEEDED one may gain detail
    (its Vonage id from a later listing)."""
    if old.unresolved:
        return True
    if old is TransferState.UNCONFIRMED:
        return new in (TransferState.SUCCEEDED, TransferState.FAILED, TransferState.UNCONFIRMED)
    return old is TransferState.SUCCEEDED and new is TransferState.SUCCEEDED
