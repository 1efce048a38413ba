"""The one retry module: which errors are retried, how often, how long it waits."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from topup_guard import retry
from topup_guard.errors import (
    AuthenticationError,
    MalformedResponseError,
    OutcomeUnknownError,
    RateLimitedError,
    RequestNotSentError,
    ServerError,
    VonageError,
)


class Flaky:
    """Fails with the given errors in turn, then answers."""

    def __init__(self, *errors: BaseException) -> None:
        self.errors = list(errors)
        self.calls = 0

    async def __call__(self) -> str:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return "ok"


class Sleeps:
    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


async def run(fn: Flaky, retryable: Callable[[BaseException], bool],
              policy: retry.RetryPolicy = retry.POST_POLICY) -> tuple[str, Sleeps]:  # fmt: skip
    sleeps = Sleeps()
    result = await retry.call(fn, name="t", retryable=retryable, policy=policy, sleep=sleeps)
    return result, sleeps


@pytest.mark.parametrize(
    "error",
    [ServerError("x", status=500), OutcomeUnknownError("x"), MalformedResponseError("x")],
)
async def test_a_top_up_is_never_resent_after_an_ambiguous_answer(error: VonageError) -> None:
    fn = Flaky(error)
    with pytest.raises(type(error)):
        await run(fn, retry.post_is_safe_to_resend)
    assert fn.calls == 1


async def test_a_top_up_that_never_left_is_resent() -> None:
    fn = Flaky(RequestNotSentError("refused"))
    result, _ = await run(fn, retry.post_is_safe_to_resend)
    assert (result, fn.calls) == ("ok", 2)


async def test_a_429_is_resent_no_earlier_than_its_retry_after() -> None:
    fn = Flaky(RateLimitedError("slow down", retry_after=7.0, status=429))
    result, sleeps = await run(fn, retry.post_is_safe_to_resend)
    assert result == "ok"
    assert sleeps.waits[0] >= 7.0


async def test_post_retries_are_bounded_in_attempts() -> None:
    fn = Flaky(*[RequestNotSentError("refused")] * 10)
    with pytest.raises(RequestNotSentError):
        await run(fn, retry.post_is_safe_to_resend)
    assert fn.calls == retry.POST_POLICY.attempts


async def test_balance_reads_are_retried_after_anything_transient() -> None:
    fn = Flaky(OutcomeUnknownError("reset"), ServerError("x", status=502),
               MalformedResponseError("html"))  # fmt: skip
    result, sleeps = await run(fn, retry.read_is_retryable, retry.READ_POLICY)
    assert (result, fn.calls, len(sleeps.waits)) == ("ok", 4, 3)


async def test_a_rejected_credential_is_not_retried() -> None:
    fn = Flaky(AuthenticationError("no", status=401))
    with pytest.raises(AuthenticationError):
        await run(fn, retry.read_is_retryable, retry.READ_POLICY)
    assert fn.calls == 1


async def test_retry_events_are_reported_as_data() -> None:
    events: list[retry.RetryEvent] = []
    fn = Flaky(OutcomeUnknownError("reset"))
    await retry.call(fn, name="get-balance", retryable=retry.read_is_retryable,
                     policy=retry.READ_POLICY, sleep=Sleeps(), on_retry=events.append)  # fmt: skip
    assert [(e.name, e.attempt, e.error_type) for e in events] == [
        ("get-balance", 1, "OutcomeUnknownError")
    ]


async def test_testing_mode_turns_waits_off_but_keeps_the_bounds() -> None:
    retry.set_testing(True)
    try:
        fn = Flaky(*[RateLimitedError("x", retry_after=30.0, status=429)] * 5)
        sleeps = Sleeps()
        with pytest.raises(RateLimitedError):
            await retry.call(fn, name="t", retryable=retry.post_is_safe_to_resend,
                             policy=retry.POST_POLICY, sleep=sleeps)  # fmt: skip
        assert sleeps.waits == [0.0] * (retry.POST_POLICY.attempts - 1)
    finally:
        retry.set_testing(False)
