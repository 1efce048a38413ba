"""The one place that retries (and the only module that imports tenacity).

Discipline after hynek/stamina: every retry is bounded in attempts *and* in time (the time
bound includes the wait about to start, so no Retry-After can stretch it), backs off
with jitter, and says by a named predicate which errors it retries. There is no default.

- Balance reads are idempotent: retried after any transport, server, 429 or malformed answer.
- A notification (webhook, PagerDuty) is resent after a 429, a 5xx or no connection: receivers
  de-duplicate (the webhook body's ``id``, PagerDuty's ``dedup_key``). Slack uses slack-sdk's own.
- The top-up POST is not idempotent: retried only when it provably never reached Vonage
  (``RequestNotSentError``) or was refused unprocessed (``RateLimitedError``, after
  its Retry-After).
  A 5xx, a timeout or a reset is *not* retried: the caller verifies by balance instead.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

from topup_guard.errors import (
    MalformedResponseError,
    NotificationError,
    RateLimitedError,
    RequestNotSentError,
    ServerError,
    TransportError,
)

if TYPE_CHECKING:
    from tenacity import RetryCallState

# tenacity is imported on the first retry only: most processes never retry, and a guard that
# does not need it is 0.5 MB smaller and starts 5-10 ms sooner.

T = TypeVar("T")

_testing = False


def set_testing(on: bool) -> None:
    """Turn every backoff wait off (Retry-After included), for fast tests. Bounds still apply."""
    global _testing
    _testing = on


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    attempts: int
    max_seconds: float
    wait_initial: float = 0.5
    wait_max: float = 5.0


READ_POLICY = RetryPolicy(attempts=4, max_seconds=20.0)
POST_POLICY = RetryPolicy(attempts=3, max_seconds=30.0, wait_initial=1.0, wait_max=10.0)
NOTIFY_POLICY = RetryPolicy(attempts=3, max_seconds=20.0, wait_initial=0.5, wait_max=5.0)


def read_is_retryable(exc: BaseException) -> bool:
    """A balance read may be repeated after anything transient."""
    return isinstance(exc, TransportError | ServerError | RateLimitedError | MalformedResponseError)


def post_is_safe_to_resend(exc: BaseException) -> bool:
    """Only when Vonage provably did not process the request."""
    return isinstance(exc, RequestNotSentError | RateLimitedError)


def notification_is_retryable(exc: BaseException) -> bool:
    """The channel said "later" (429, 5xx) or could not be reached; a refusal is final."""
    return isinstance(exc, NotificationError) and exc.retryable


@dataclass(frozen=True, slots=True)
class RetryEvent:
    """One retry about to happen, as data (for logs and span events)."""

    name: str
    attempt: int
    wait: float
    error_type: str


def _wait(policy: RetryPolicy) -> Callable[[RetryCallState], float]:
    from tenacity import wait_random_exponential

    backoff = wait_random_exponential(multiplier=policy.wait_initial, max=policy.wait_max)

    def wait(state: RetryCallState) -> float:
        if _testing:
            return 0.0
        delay = backoff(state)
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, RateLimitedError) and exc.retry_after is not None:
            delay = max(delay, exc.retry_after)  # never earlier than the server asked
        return float(delay)

    return wait


async def call(
    fn: Callable[[], Awaitable[T]],
    *,
    name: str,
    retryable: Callable[[BaseException], bool],
    policy: RetryPolicy,
    sleep: Callable[[float], Awaitable[object]],
    on_retry: Callable[[RetryEvent], None] | None = None,
) -> T:
    """Run ``fn`` with retries; the last error is re-raised unchanged when the bounds are hit.

    ``sleep`` is the engine clock's sleep, so backtests and tests on a virtual clock never wait.
    The first attempt runs outside tenacity (most calls succeed; the machinery costs a tenth of
    a poll's CPU); its failure is then replayed as tenacity's first attempt, so every bound and
    wait applies exactly as if tenacity had made it.
    """
    try:
        return await fn()
    except BaseException as exc:
        if not retryable(exc):
            raise
        first: BaseException | None = exc
    from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, stop_before_delay

    def before_sleep(state: RetryCallState) -> None:
        if on_retry is None or state.outcome is None:
            return
        exc = state.outcome.exception()
        wait = state.next_action.sleep if state.next_action else 0.0
        on_retry(RetryEvent(name, state.attempt_number, float(wait), type(exc).__name__))

    async def _sleep(seconds: float) -> None:
        await sleep(seconds)

    retrying = AsyncRetrying(
        # stop_before_delay counts the coming wait: a Retry-After longer than what is left of the
        # budget ends the retries now (the caller fails or verifies) instead of sleeping past it.
        stop=stop_after_attempt(policy.attempts) | stop_before_delay(policy.max_seconds),
        wait=_wait(policy),
        retry=retry_if_exception(retryable),
        reraise=True,
        sleep=_sleep,
        before_sleep=before_sleep,
    )
    async for attempt in retrying:
        with attempt:
            if first is not None:
                replay, first = first, None
                raise replay
            return await fn()
    raise AssertionError("unreachable: tenacity reraises")  # pragma: no cover
