"""The safe transfer: ledger intent, one POST with the entry's reference, doubt settled by listing.

1. PENDING is committed (``begin``: single-flight per subaccount, fenced) before the POST leaves;
   the POST carries ``reference_for(entry)``, unique across ledgers.
2. The POST is resent only when it provably never arrived or was refused unprocessed
   (``retry.post_is_safe_to_resend``), and only while this replica still holds the lease.
3. A parsed transfer in a 200/201 is SUCCEEDED (its Vonage id kept); a definite refusal is
   FAILED with what to do (``transfer_text``); anything else is UNKNOWN. An entry is never resent.
4. ``settle_open`` lists each doubtful account's transfers from a minute before its entry and
   looks for the reference: found is SUCCEEDED (amount as listed); absent from a listing asked
   at least ``verify_after_s`` after the call ended is FAILED ("the listing proves it did not
   happen"), and only then may a new transfer — a new entry — be made; a failing listing
   changes nothing until ``settle_window_s`` has passed, then the entry is UNCONFIRMED (counted
   in the caps, alerted) and still settled by the first listing that answers.
Dry runs are recorded as DRY_RUN and never sent (and never counted in caps).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Protocol

from opentelemetry import trace

from topup_guard import retry
from topup_guard.clock import Clock
from topup_guard.coordination import Coordinator
from topup_guard.errors import LedgerError
from topup_guard.fleet.transfer_base import (
    TransferBusyError,
    TransferEntry,
    TransferLedger,
    TransferState,
)
from topup_guard.fleet.transfer_text import (
    UNCONFIRMED_ACTION,
    LeaseLostBeforeResend,
    StoppedBeforeResend,
    action_for,
    is_definite_refusal,
    refusal_text,
)
from topup_guard.funding import FundOutcome, FundRequest, FundResult
from topup_guard.ledger.base import FencedError
from topup_guard.model import Transfer

log = logging.getLogger("topup_guard.fleet.transfer")

VERIFY_AFTER_S = 5.0  # a listing this long after the call is believed when the reference is absent
SETTLE_WINDOW_S = 600.0  # unresolved this long after it began: UNCONFIRMED (and an alert)
LISTING_LEAD_S = 60.0  # the listing starts this long before the entry (clock skew with Vonage)
FOREIGN_PENDING_S = 60.0  # another process's PENDING may still be on the wire this long


class TransferAPI(Protocol):
    """The part of ``FleetAPI`` a transfer needs (``VonageClient`` satisfies it)."""

    async def transfer_balance(
        self, from_key: str, to_key: str, amount: Decimal, reference: str | None = None
    ) -> Transfer: ...

    async def list_balance_transfers(
        self, start_date: str, end_date: str | None = None, subaccount: str | None = None
    ) -> list[Transfer]: ...


# A transfer ends as any funding step does (``funding.FundOutcome``): APPLIED is SUCCEEDED (Vonage
# answered with the transfer), REFUSED is FAILED, AMBIGUOUS is UNKNOWN or PENDING left (settled by
# listing), NOT_STARTED is nothing sent (lease lost, fenced, busy, ledger unusable).
TransferOutcome = FundOutcome


@dataclass(frozen=True, slots=True)
class TransferResult:
    outcome: TransferOutcome
    entry: TransferEntry | None
    detail: str
    action: str | None = None
    requests: int = 0  # POSTs sent (a connect-error retry may send more that never arrived)


def iso_utc(wall: float) -> str:
    """Unix seconds as the listing's ``start_date``: ``2026-12-01T22:00:00Z``."""
    return datetime.fromtimestamp(wall, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class SafeTransfer:
    """Funds subaccounts from the primary through the transfer ledger, exactly once."""

    def __init__(
        self,
        api: TransferAPI,
        ledger: TransferLedger,
        coordinator: Coordinator,
        clock: Clock,
        *,
        primary_key: str,
        dry_run: bool = False,
        tracer: trace.Tracer | None = None,
        verify_after_s: float = VERIFY_AFTER_S,
        settle_window_s: float = SETTLE_WINDOW_S,
        foreign_pending_s: float = FOREIGN_PENDING_S,
    ) -> None:
        self._api = api
        self.ledger = ledger
        self.coordinator = coordinator
        self._clock = clock
        self.primary_key = primary_key
        self.dry_run = dry_run
        self._tracer = tracer or trace.get_tracer("topup_guard")
        self.verify_after_s = verify_after_s
        self.settle_window_s = settle_window_s
        self.foreign_pending_s = foreign_pending_s
        self._inflight: set[int] = set()  # entries whose POST this process is making right now

    async def fund(
        self, request: FundRequest, *, stop: asyncio.Event | None = None
    ) -> FundResult[TransferEntry]:
        """The funding step (``funding.Funding``): a transfer of ``request.amount`` to
        ``request.account``; its doubt is settled by ``settle_open`` (the listing)."""
        if request.amount is None or request.amount <= 0:
            raise ValueError("a transfer needs a positive amount")
        r = await self.send(request.account, request.amount, request.reason, stop=stop)
        return FundResult(r.outcome, r.entry, r.detail, r.action, r.requests)

    async def send(
        self,
        account: str,
        amount: Decimal,
        reason: str,
        *,
        dry_run: bool | None = None,
        despite_unconfirmed: bool = False,
        stop: asyncio.Event | None = None,
    ) -> TransferResult:
        """One transfer of ``amount`` EUR from the primary to ``account``, recorded first.

        ``stop`` set while waiting to resend a POST that provably never arrived ends the
        transfer (FAILED: nothing moved), so a shutdown never waits out a Retry-After."""
        dry = self.dry_run if dry_run is None else dry_run
        with self._tracer.start_as_current_span("transfer") as span:
            span.set_attribute("transfer.account", account)
            span.set_attribute("transfer.amount", str(amount))
            result = await self._send(account, amount, reason, dry, despite_unconfirmed, stop)
            span.set_attribute("transfer.outcome", result.outcome.value)
            span.set_attribute("transfer.requests", result.requests)
            if result.entry is not None:
                span.set_attribute("transfer.id", result.entry.transfer_id)
            extra = {"account": account, "amount": str(amount), "outcome": result.outcome.value,
                     "transfer_id": result.entry.transfer_id if result.entry else None,
                     "detail": result.detail}  # fmt: skip
            level = logging.INFO if result.outcome is not TransferOutcome.REFUSED else logging.ERROR
            log.log(level, f"transfer_{result.outcome.value}", extra=extra)
            return result

    async def _send(
        self,
        account: str,
        amount: Decimal,
        reason: str,
        dry: bool,
        despite_unconfirmed: bool,
        stop: asyncio.Event | None,
    ) -> TransferResult:
        if not self.coordinator.may_spend():
            return _not_started("this replica does not hold the spending lease; nothing was sent")
        try:
            entry = await self.ledger.begin(
                account=account,
                amount=amount,
                reason=reason,
                wall=self._clock.wall(),
                epoch=self.coordinator.epoch,
                holder=self.coordinator.holder,
                dry_run=dry,
                despite_unconfirmed=despite_unconfirmed,
            )
        except TransferBusyError as exc:
            return _not_started(f"{exc}; it is settled by listing first, nothing was sent")
        except FencedError as exc:
            return _not_started(f"fenced: {exc}")
        except LedgerError as exc:
            return _not_started(f"the transfer ledger cannot be written ({exc}); nothing was sent")
        if dry:
            return TransferResult(TransferOutcome.DRY_RUN, entry, "dry run: transfer not sent")
        self._inflight.add(entry.transfer_id)
        try:
            return await self._post(entry, stop)
        finally:
            self._inflight.discard(entry.transfer_id)

    async def _post(self, entry: TransferEntry, stop: asyncio.Event | None) -> TransferResult:
        if not self.coordinator.may_spend():  # lost between the check and the ledger write
            done = await self._mark(entry, TransferState.FAILED, "lease lost before sending")
            return _not_started("the lease was lost before sending; nothing was sent", done)
        sent = 0

        async def post() -> Transfer:
            nonlocal sent
            if sent and not self.coordinator.may_spend():
                raise LeaseLostBeforeResend
            sent += 1
            return await self._api.transfer_balance(
                self.primary_key, entry.account, entry.amount, entry.reference
            )

        async def sleep(seconds: float) -> None:
            if await self._clock.sleep(seconds, wake=stop):
                raise StoppedBeforeResend

        try:
            answer = await retry.call(
                post,
                name="balance-transfer",
                retryable=retry.post_is_safe_to_resend,
                policy=retry.POST_POLICY,
                sleep=sleep,
            )
        except Exception as exc:
            if is_definite_refusal(exc):
                detail = refusal_text(exc, entry.account)
                action = action_for(exc, account=entry.account, primary=self.primary_key)
                done = await self._mark(entry, TransferState.FAILED, detail)
                return TransferResult(TransferOutcome.REFUSED, done, detail, action, sent)
            detail = f"the answer was ambiguous ({type(exc).__name__}: {exc}); settling by listing"
            done = await self._mark(entry, TransferState.UNKNOWN, detail)
            return TransferResult(TransferOutcome.AMBIGUOUS, done, detail, None, sent)
        if answer.reference and answer.reference != entry.reference:
            detail = f"Vonage answered with another reference ({answer.reference}); settling"
            done = await self._mark(entry, TransferState.UNKNOWN, detail)
            return TransferResult(TransferOutcome.AMBIGUOUS, done, detail, None, sent)
        detail = f"Vonage confirmed transfer {answer.id} of EUR {answer.amount} to {entry.account}"
        done = await self._mark(
            entry, TransferState.SUCCEEDED, detail, vonage_id=answer.id, applied=answer.amount
        )
        outcome = TransferOutcome.APPLIED if done.state is TransferState.SUCCEEDED else (
            TransferOutcome.AMBIGUOUS)  # fmt: skip
        return TransferResult(outcome, done, detail, None, sent)

    async def _mark(
        self,
        entry: TransferEntry,
        state: TransferState,
        detail: str,
        *,
        vonage_id: str | None = None,
        applied: Decimal | None = None,
    ) -> TransferEntry:
        """Record the new state; if the ledger refuses, the entry stays as it was (a PENDING
        left behind is settled by listing, like one left by a crash)."""
        mine = entry.holder == self.coordinator.holder
        try:
            return await self.ledger.transition(
                entry.transfer_id,
                state,
                wall=self._clock.wall(),
                epoch=entry.begin_epoch if mine else self.coordinator.epoch,
                vonage_id=vonage_id,
                applied_amount=applied,
                detail=detail,
            )
        except LedgerError as exc:
            log.error(
                "transfer_ledger_write_failed",
                extra={"account": entry.account, "transfer_id": entry.transfer_id,
                       "state": state.value, "error_type": type(exc).__name__},
            )  # fmt: skip
            return entry

    # --- settling by listing ---------------------------------------------------------------
    async def settle_open(self) -> list[TransferEntry]:
        """Settle every entry in doubt (PENDING, UNKNOWN, UNCONFIRMED) by listing its account's
        transfers; returns the entries whose state changed, as they are now. Only the lease
        holder settles (its epoch is the one the ledger accepts)."""
        if not self.coordinator.may_spend():
            return []
        doubtful = [e for e in await self.ledger.in_doubt() if e.transfer_id not in self._inflight]
        by_account: dict[str, list[TransferEntry]] = {}
        for e in doubtful:
            by_account.setdefault(e.account, []).append(e)
        changed: list[TransferEntry] = []
        for account, entries in by_account.items():
            changed += await self._settle_account(account, entries)
        return changed

    async def _settle_account(
        self, account: str, entries: list[TransferEntry]
    ) -> list[TransferEntry]:
        with self._tracer.start_as_current_span("transfer.settle") as span:
            span.set_attribute("transfer.account", account)
            asked = self._clock.wall()
            start = iso_utc(min(e.created_wall for e in entries) - LISTING_LEAD_S)
            try:
                listed: list[Transfer] | None = await self._api.list_balance_transfers(
                    start_date=start, subaccount=account
                )
                why = ""
            except Exception as exc:  # any failure: nothing proved either way
                listed, why = None, f"the listing failed ({type(exc).__name__}: {exc})"
                log.warning("transfer_listing_failed", extra={"account": account, "detail": why})
            changed = []
            for e in entries:
                new = await self._settle_one(e, listed, asked, why)
                if new is not None:
                    changed.append(new)
            span.set_attribute("transfer.settled", len(changed))
            return changed

    async def _settle_one(
        self, e: TransferEntry, listed: list[Transfer] | None, asked: float, why: str
    ) -> TransferEntry | None:
        if listed is not None:
            found = [t for t in listed if t.reference == e.reference and t.to_key == e.account]
            if found:
                if len(found) > 1:
                    log.error(
                        "transfer_duplicate_reference",
                        extra={
                            "account": e.account,
                            "transfer_id": e.transfer_id,
                            "detail": f"{len(found)} transfers carry {e.reference}",
                        },
                    )
                moved = sum((t.amount for t in found), Decimal(0))
                detail = f"the listing shows transfer {found[0].id} of EUR {moved}"
                return await self._resolve(e, TransferState.SUCCEEDED, detail, found[0].id, moved)
            # A transfer to this account without a reference (made by hand, or an API that
            # dropped ours) might be this one: then absence proves nothing.
            anonymous = [t for t in listed if t.to_key == e.account and not t.reference]
            call_end = e.updated_wall if e.state is not TransferState.PENDING else e.created_wall
            wait = self.verify_after_s
            if e.state is TransferState.PENDING and e.holder != self.coordinator.holder:
                wait = max(wait, self.foreign_pending_s)  # its sender may still be on the wire
            waited = e.state is TransferState.UNCONFIRMED or asked - call_end >= wait
            if waited and not anonymous:
                detail = f"the listing proves it did not happen (no {e.reference} since it began)"
                return await self._resolve(e, TransferState.FAILED, detail)
            if not anonymous:
                return None
            why = (
                f"the listing shows {len(anonymous)} transfer(s) to {e.account} without a reference"
            )
        if e.state is TransferState.UNCONFIRMED or asked - e.created_wall < self.settle_window_s:
            return None
        detail = f"not settled within {self.settle_window_s:.0f} s: {why}"
        log.error(
            "transfer_unconfirmed",
            extra={
                "account": e.account,
                "transfer_id": e.transfer_id,
                "action": UNCONFIRMED_ACTION,
            },
        )
        return await self._resolve(e, TransferState.UNCONFIRMED, detail)

    async def _resolve(
        self,
        e: TransferEntry,
        state: TransferState,
        detail: str,
        vonage_id: str | None = None,
        applied: Decimal | None = None,
    ) -> TransferEntry | None:
        try:
            new = await self.ledger.transition(
                e.transfer_id,
                state,
                wall=self._clock.wall(),
                epoch=self.coordinator.epoch,
                vonage_id=vonage_id,
                applied_amount=applied,
                detail=detail,
            )
        except LedgerError as exc:
            log.warning(
                "transfer_settle_not_recorded",
                extra={
                    "account": e.account,
                    "transfer_id": e.transfer_id,
                    "error_type": type(exc).__name__,
                },
            )
            return None
        log.info(
            "transfer_settled",
            extra={
                "account": e.account,
                "transfer_id": e.transfer_id,
                "state": new.state.value,
                "detail": detail,
            },
        )
        return new if new.state is not e.state else None


def _not_started(detail: str, entry: TransferEntry | None = None) -> TransferResult:
    return TransferResult(TransferOutcome.NOT_STARTED, entry, detail)
