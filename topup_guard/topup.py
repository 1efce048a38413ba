"""The safe top-up: ledger intent, one careful POST, verification by balance.

Vonage has no idempotency key and no list of past top-ups; the balance is the only evidence. So:
1. PENDING is committed to the ledger (balance before, expected amount) before the request leaves;
2. the POST is resent only when it provably never arrived or was refused unprocessed (retry.py);
3. after a 5xx, a timeout, a reset or a garbled answer nothing is resent: the balance is read until
   the credit step shows (SUCCEEDED) or the settle window passes (UNCONFIRMED, alert);
4. a definite refusal is FAILED. Caps and the breaker count these entries (limits.py).
Verification is bounded by the settle window and is not cut short by shutdown: a pod's grace
period should exceed ``TOPUP_GUARD_SETTLE_WINDOW + TOPUP_GUARD_HTTP_TIMEOUT``; if it is killed
anyway, the entry stays unresolved and is reconciled on the next start before any new top-up.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from decimal import Decimal
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
    VonageError,
)
from topup_guard.events import Outcome, TopUpFinished
from topup_guard.ledger.base import Attempt, AttemptState, Ledger
from topup_guard.model import Balance

log = logging.getLogger("topup_guard.topup")
CENT = Decimal("0.01")


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


def credit_seen(
    before: Decimal, observed: Decimal, elapsed: float, rate: float, expected: Decimal | None
) -> Decimal | None:
    """The credit a balance reading proves, allowing for spend since ``before``, or None.

    Without a credit the balance would be about ``before - rate * elapsed``. A step above that of
    at least half the expected amount (any rise at all when the amount is unknown) is the credit.
    Vonage's own auto-reload landing at the same moment is indistinguishable and harmless: the
    money is there either way, and the policy acts on the real balance next.
    """
    spend = Decimal(str(max(rate, 0.0) * max(elapsed, 0.0))).quantize(Decimal("0.00000001"))
    step = observed - (before - spend)
    threshold = expected / 2 if expected is not None else CENT
    if observed > before - spend and step >= threshold:
        return step.quantize(CENT)
    return None


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


class SafeTopUp:
    def __init__(
        self,
        api: AccountAPI,
        ledger: Ledger,
        coordinator: Coordinator,
        clock: Clock,
        *,
        trx: str,
        read_balance: Callable[[], Awaitable[Balance]],
        settle_window: float,
        verify_interval: float,
        dry_run: bool = False,
        tracer: trace.Tracer | None = None,
    ) -> None:
        self._api = api
        self._ledger = ledger
        self._coord = coordinator
        self._clock = clock
        self._trx = trx
        self._read = read_balance
        self._settle = settle_window
        self._interval = max(verify_interval, 0.1)
        self._dry_run = dry_run
        self._tracer = tracer or trace.get_tracer("topup_guard")

    async def execute(self, req: TopUpRequest) -> TopUpFinished:
        """One top-up attempt, start to final state. Raises LedgerError if it may not begin."""
        with self._tracer.start_as_current_span("topup") as span:
            if not self._coord.may_spend():
                raise LeaseLostError("this replica does not hold the spending lease")
            attempt = await self._ledger.begin(
                balance_before=req.balance_before,
                expected_amount=req.expected_amount,
                reason=req.reason,
                wall=self._clock.wall(),
                epoch=self._coord.epoch,
                holder=self._coord.holder,
                dry_run=self._dry_run,
            )
            span.set_attribute("topup.attempt_id", attempt.attempt_id)
            if self._dry_run:
                result = self._finished(attempt, req, Outcome.DRY_RUN, requests=0,
                                        detail="dry run: top-up not sent")  # fmt: skip
            else:
                result = await self._send(attempt, req)
            span.set_attribute("topup.outcome", result.outcome.value)
            span.set_attribute("topup.requests", result.requests)
            return result

    async def _send(self, attempt: Attempt, req: TopUpRequest) -> TopUpFinished:
        sent = 0
        started = self._clock.now()

        async def post() -> None:
            nonlocal sent
            if sent and not self._coord.may_spend():
                raise LeaseLostError("lease lost before a resend")
            sent += 1
            await self._api.top_up(self._trx)

        try:
            await retry.call(
                post,
                name="top-up",
                retryable=retry.post_is_safe_to_resend,
                policy=retry.POST_POLICY,
                sleep=self._clock.sleep,
            )
        except (ServerError, OutcomeUnknownError, MalformedResponseError) as exc:
            # Ambiguous: Vonage may have applied it. Never resend; look at the balance.
            await self._transition(attempt, AttemptState.UNKNOWN, detail=str(exc))
            return await self._verify(attempt, req, started, sent, cause=str(exc))
        except (ApiError, RequestNotSentError, LeaseLostError) as exc:
            # Definite: refused (4xx, 429 after retries) or never arrived. Nothing was charged.
            detail = f"{type(exc).__name__}: {exc}"
            if isinstance(exc, RateLimitedError):
                detail = f"rate limited by Vonage on every try: {exc}"
            done = await self._transition(attempt, AttemptState.FAILED, detail=detail)
            return self._finished(done, req, Outcome.FAILED, requests=sent, detail=detail,
                                  action=_action_for(exc))  # fmt: skip
        # 200 + error-code "200": applied. Read once to report the new balance and learn the amount.
        credited, after = await self._observe_credit(req, started)
        done = await self._transition(
            attempt, AttemptState.SUCCEEDED, credited=credited, evidence="api"
        )
        return self._finished(done, req, Outcome.SUCCEEDED, requests=sent, after=after,
                              detail="Vonage confirmed the top-up", evidence="api")  # fmt: skip

    async def _observe_credit(
        self, req: TopUpRequest, started: float
    ) -> tuple[Decimal | None, Decimal | None]:
        try:
            balance = await self._read()
        except VonageError:
            return None, None
        elapsed = self._clock.now() - started
        seen = credit_seen(
            req.balance_before, balance.value, elapsed, req.rate, req.expected_amount
        )
        return seen, balance.value

    async def _verify(
        self, attempt: Attempt, req: TopUpRequest, started: float, sent: int, cause: str
    ) -> TopUpFinished:
        with self._tracer.start_as_current_span("topup.verify") as span:
            deadline = started + self._settle
            last: Decimal | None = None
            while True:
                try:
                    balance = await self._read()
                    last = balance.value
                    elapsed = self._clock.now() - started
                    credited = credit_seen(
                        req.balance_before, last, elapsed, req.rate, req.expected_amount
                    )
                    if credited is not None:
                        span.set_attribute("topup.verified", True)
                        evidence = f"balance step +{credited} EUR"
                        done = await self._transition(
                            attempt, AttemptState.SUCCEEDED, credited=credited, evidence=evidence
                        )
                        return self._finished(
                            done, req, Outcome.SUCCEEDED, requests=sent, after=last,
                            detail=f"answer was ambiguous ({cause}); credit seen in the balance",
                            evidence=evidence,
                        )  # fmt: skip
                except VonageError as exc:
                    log.warning("verify_read_failed", extra={"error_type": type(exc).__name__})
                if self._clock.now() >= deadline:
                    break
                await self._clock.sleep(min(self._interval, deadline - self._clock.now()))
            span.set_attribute("topup.verified", False)
            detail = (
                f"answer was ambiguous ({cause}) and no credit showed within {self._settle:.0f} s"
            )
            done = await self._transition(attempt, AttemptState.UNCONFIRMED, detail=detail)
            return self._finished(
                done, req, Outcome.UNCONFIRMED, requests=sent, after=last, detail=detail,
                action=(
                    "Check the Vonage dashboard for a payment around this time. If it was charged, "
                    "nothing else to do; the guard will top up again only if the balance needs it."
                ),
            )  # fmt: skip

    async def reconcile(self, rate: float = 0.0) -> list[TopUpFinished]:
        """Resolve entries a previous run left PENDING or UNKNOWN, before any new top-up.

        A crash before the send cannot be told from one after it, so each is verified by balance
        against its recorded balance-before, allowing for ``rate`` of spend since it was written.
        """
        results = []
        for attempt in await self._ledger.unresolved():
            if attempt.state is AttemptState.PENDING:
                attempt = await self._transition(
                    attempt, AttemptState.UNKNOWN, detail="found pending at start: reconciling"
                )
            age = max(0.0, self._clock.wall() - attempt.created_wall)
            req = TopUpRequest(
                attempt.balance_before, attempt.expected_amount, attempt.reason, rate, 0.0
            )
            cause = f"left {attempt.state.value} by an earlier run {age:.0f} s ago"
            results.append(await self._verify(attempt, req, self._clock.now() - age, 0, cause))
        return results

    async def _transition(
        self,
        attempt: Attempt,
        state: AttemptState,
        *,
        credited: Decimal | None = None,
        evidence: str | None = None,
        detail: str = "",
    ) -> Attempt:
        # The sender records its own attempt under the epoch it began with (it may have spent
        # money after losing the lease); anyone else reconciles under the current epoch.
        mine = attempt.holder == self._coord.holder
        return await self._ledger.transition(
            attempt.attempt_id,
            state,
            wall=self._clock.wall(),
            epoch=attempt.epoch if mine else self._coord.epoch,
            credited=credited,
            evidence=evidence,
            detail=detail,
        )

    def _finished(
        self,
        attempt: Attempt,
        req: TopUpRequest,
        outcome: Outcome,
        *,
        requests: int,
        detail: str,
        after: Decimal | None = None,
        evidence: str | None = None,
        action: str | None = None,
    ) -> TopUpFinished:
        return TopUpFinished(
            attempt_id=attempt.attempt_id,
            outcome=outcome,
            balance_before=attempt.balance_before,
            expected_amount=attempt.expected_amount,
            credited=attempt.credited,
            balance_after=after,
            reason=req.reason,
            rate=req.rate,
            time_to_exhaustion=req.time_to_exhaustion,
            detail=detail,
            action_needed=action,
            requests=requests,
            evidence=evidence,
            wall=self._clock.wall(),
        )
