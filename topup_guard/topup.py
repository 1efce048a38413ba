"""The safe top-up: ledger intent, one careful POST, the outcome recorded truthfully.

Vonage has no idempotency key and no list of past top-ups; the balance is the only evidence. So:
1. PENDING is committed to the ledger (balance before, expected amount) before the request leaves;
2. the POST is resent only when it provably never arrived or was refused unprocessed (retry.py),
   and a shutdown during the wait before a resend ends it (nothing was applied);
3. Vonage's "200" is SUCCEEDED at once (the credit is then *in flight* until the balance shows
   it); a definite refusal is FAILED; anything else (a 5xx, a timeout, a reset, a garbled
   answer, a 200 carrying another error code) is UNKNOWN and settled by the balance, never resent.
Settling is not done here: the engine's own polls watch for the credit step between consecutive
readings (``policy/credits.py``) and call ``settle``, so a top-up in doubt never makes the guard
deaf, and a shutdown never waits for it — an UNKNOWN entry left behind is what the next start
(or the next lease holder) settles.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum
from typing import Protocol

from opentelemetry import trace

from topup_guard import retry
from topup_guard.clock import Clock
from topup_guard.coordination import Coordinator
from topup_guard.errors import (
    ApiError,
    AuthenticationError,
    AutoReloadDisabledError,
    LedgerError,
    MalformedResponseError,
    OutcomeUnknownError,
    RateLimitedError,
    RequestNotSentError,
    ServerError,
    TopUpRefusedError,
    ValidationError,
)
from topup_guard.events import Outcome, TopUpFinished
from topup_guard.funding import FundOutcome, FundRequest, FundResult
from topup_guard.ledger.base import Attempt, AttemptState, Ledger
from topup_guard.model import Balance

log = logging.getLogger("topup_guard.topup")


class AccountAPI(Protocol):
    """What the guard needs from Vonage (the HTTP client, or the backtest's in-process account)."""

    async def get_balance(self) -> Balance: ...

    async def top_up(self, trx: str) -> None: ...


@dataclass(frozen=True, slots=True)
class TopUpRequest:
    balance_before: Decimal
    expected_amount: Decimal | None
    reason: str
    rate: float  # EUR/s, to allow for spend while verifying
    time_to_exhaustion: float


class LeaseLostError(LedgerError):
    """This replica may no longer spend (lease lost or shared store down)."""


_ACTION = {
    AutoReloadDisabledError: (
        "Auto-reload is off at Vonage, so top-ups cannot work: make a manual payment with "
        "auto-reload enabled in the Vonage dashboard, then set TOPUP_GUARD_TRX to its reference."
    ),
    AuthenticationError: (
        "Vonage rejected the credentials: check VONAGE_API_KEY and VONAGE_API_SECRET."
    ),
    TopUpRefusedError: (
        "Vonage refused the top-up (the payment probably failed): check the payment method in "
        "the Vonage dashboard; after three failed payments Vonage disables auto-reload."
    ),
    ValidationError: "Vonage rejected the request: check TOPUP_GUARD_TRX.",
}


def _action_for(exc: BaseException) -> str:
    for kind, text in _ACTION.items():
        if isinstance(exc, kind):
            return text
    return "Check the Vonage dashboard and the guard's logs; the guard keeps watching."


class SendOutcome(StrEnum):
    CONFIRMED = "confirmed"  # 200 + error-code "200": SUCCEEDED, credit in flight
    AMBIGUOUS = "ambiguous"  # UNKNOWN: may or may not have been applied
    FAILED = "failed"  # definitely not applied
    DRY_RUN = "dry_run"  # audited, never sent


@dataclass(frozen=True, slots=True)
class SendResult:
    attempt: Attempt
    outcome: SendOutcome
    requests: int  # POSTs sent (a connect-error retry may send more than one that never arrived)
    detail: str
    answered_at: float  # clock time the answer (or its absence) was known
    action: str | None = None


_FUNDED = {
    SendOutcome.CONFIRMED: FundOutcome.APPLIED,
    SendOutcome.AMBIGUOUS: FundOutcome.AMBIGUOUS,
    SendOutcome.FAILED: FundOutcome.REFUSED,
    SendOutcome.DRY_RUN: FundOutcome.DRY_RUN,
}


class _Stopped(Exception):
    """Shutdown came while waiting to resend a POST that provably did not arrive."""


class SafeTopUp:
    """Charges the card through the ledger; one instance, built in the composition root, serves
    the guard's loop and the CLI alike."""

    def __init__(
        self,
        api: AccountAPI,
        ledger: Ledger,
        coordinator: Coordinator,
        clock: Clock,
        *,
        trx: str,
        dry_run: bool = False,
        tracer: trace.Tracer | None = None,
    ) -> None:
        self._api = api
        self.ledger = ledger
        self.coordinator = coordinator
        self._clock = clock
        self._trx = trx
        self.dry_run = dry_run
        self._tracer = tracer or trace.get_tracer("topup_guard")

    async def fund(
        self,
        request: FundRequest,
        *,
        stop: asyncio.Event | None = None,
        despite_doubt: bool = False,
    ) -> FundResult[Attempt]:
        """The funding step (``funding.Funding``): one top-up of the stored payment; its doubt
        is settled by the balance step between readings (``settling.py``), not here."""
        req = TopUpRequest(
            balance_before=request.balance_before,
            expected_amount=request.amount,
            reason=request.reason,
            rate=request.rate,
            time_to_exhaustion=request.time_to_exhaustion,
        )
        try:
            r = await self.send(req, despite_doubt=despite_doubt, stop=stop)
        except LedgerError as exc:  # busy, fenced, lease lost: nothing was sent
            return FundResult(FundOutcome.NOT_STARTED, None, str(exc))
        return FundResult(_FUNDED[r.outcome], r.attempt, r.detail, r.action, r.requests)

    async def send(
        self,
        req: TopUpRequest,
        *,
        despite_doubt: bool = False,
        stop: asyncio.Event | None = None,
        dry_run: bool | None = None,
    ) -> SendResult:
        """One top-up request, recorded before it leaves. Raises LedgerError if it may not begin
        (another attempt PENDING, or UNKNOWN without ``despite_doubt``; lease lost)."""
        dry = self.dry_run if dry_run is None else dry_run
        with self._tracer.start_as_current_span("topup") as span:
            if not self.coordinator.may_spend():
                raise LeaseLostError("this replica does not hold the spending lease")
            attempt = await self.ledger.begin(
                balance_before=req.balance_before,
                expected_amount=req.expected_amount,
                reason=req.reason,
                wall=self._clock.wall(),
                epoch=self.coordinator.epoch,
                holder=self.coordinator.holder,
                dry_run=dry,
                despite_doubt=despite_doubt,
            )
            span.set_attribute("topup.attempt_id", attempt.attempt_id)
            if dry:
                result = SendResult(attempt, SendOutcome.DRY_RUN, 0, "dry run: top-up not sent",
                                    self._clock.now())  # fmt: skip
            else:
                result = await self._post(attempt, stop)
            span.set_attribute("topup.outcome", result.outcome.value)
            span.set_attribute("topup.requests", result.requests)
            return result

    async def _post(self, attempt: Attempt, stop: asyncio.Event | None) -> SendResult:
        sent = 0

        async def post() -> None:
            nonlocal sent
            if sent and not self.coordinator.may_spend():
                raise LeaseLostError("lease lost before a resend")
            sent += 1
            await self._api.top_up(self._trx)

        async def sleep(seconds: float) -> None:
            if await self._clock.sleep(seconds, wake=stop):
                raise _Stopped

        try:
            await retry.call(
                post,
                name="top-up",
                retryable=retry.post_is_safe_to_resend,
                policy=retry.POST_POLICY,
                sleep=sleep,
            )
        except (ServerError, OutcomeUnknownError, MalformedResponseError) as exc:
            # Ambiguous: Vonage may have applied it. Never resend; the balance will tell.
            detail = f"the answer was ambiguous ({exc}); verifying by balance"
            done = await self.settle(attempt, AttemptState.UNKNOWN, detail=detail)
            return SendResult(done, SendOutcome.AMBIGUOUS, sent, detail, self._clock.now())
        except (ApiError, RequestNotSentError, LeaseLostError, _Stopped) as exc:
            # Definite: refused (4xx, 429 after retries) or never arrived. Nothing was charged.
            detail = _refusal_text(exc)
            done = await self.settle(attempt, AttemptState.FAILED, detail=detail)
            return SendResult(done, SendOutcome.FAILED, sent, detail, self._clock.now(),
                              action=_action_for(exc))  # fmt: skip
        detail = "Vonage confirmed the top-up; its credit is on its way"
        done = await self.settle(attempt, AttemptState.SUCCEEDED, evidence="api", detail=detail)
        return SendResult(done, SendOutcome.CONFIRMED, sent, detail, self._clock.now())

    async def settle(
        self,
        attempt: Attempt,
        state: AttemptState,
        *,
        credited: Decimal | None = None,
        evidence: str | None = None,
        detail: str = "",
    ) -> Attempt:
        """Append the attempt's new state (or new evidence for a SUCCEEDED one)."""
        # The sender records its own attempt under the epoch it began with (it may have spent
        # money after losing the lease); anyone else reconciles under the current epoch.
        mine = attempt.holder == self.coordinator.holder
        return await self.ledger.transition(
            attempt.attempt_id,
            state,
            wall=self._clock.wall(),
            epoch=attempt.epoch if mine else self.coordinator.epoch,
            credited=credited,
            evidence=evidence,
            detail=detail,
        )


def _refusal_text(exc: BaseException) -> str:
    if isinstance(exc, _Stopped):
        return "shutdown before a resend; the earlier try provably did not reach Vonage"
    if isinstance(exc, RateLimitedError):
        return f"rate limited by Vonage on every try, nothing was charged: {exc}"
    if isinstance(exc, TopUpRefusedError):
        return f"Vonage refused the payment, nothing was charged: {exc}"
    if isinstance(exc, AutoReloadDisabledError):
        return f"auto-reload is off at Vonage, nothing was charged: {exc}"
    return f"{type(exc).__name__}: {exc}"


def finished(
    attempt: Attempt,
    outcome: Outcome,
    *,
    wall: float,
    detail: str,
    requests: int = 0,
    rate: float = 0.0,
    time_to_exhaustion: float = float("inf"),
    after: Decimal | None = None,
    evidence: str | None = None,
    action: str | None = None,
) -> TopUpFinished:
    """The event announcing an attempt's final state."""
    return TopUpFinished(
        attempt_id=attempt.attempt_id,
        outcome=outcome,
        balance_before=attempt.balance_before,
        expected_amount=attempt.expected_amount,
        credited=attempt.credited,
        balance_after=after,
        reason=attempt.reason,
        rate=rate,
        time_to_exhaustion=time_to_exhaustion,
        detail=detail,
        action_needed=action,
        requests=requests,
        evidence=evidence,
        wall=wall,
    )


UNCONFIRMED_ACTION = (
    "Check the Vonage dashboard for a payment around this time. If it was charged, nothing else "
    "to do; the guard tops up again only if the balance needs it."
)
