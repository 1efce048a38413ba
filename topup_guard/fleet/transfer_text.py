"""What a refused transfer means and what to do about it: which answers are definite, in words.

A transfer is FAILED straight from its answer only when the answer proves nothing moved: a 4xx
that Vonage sends for a request it did not process (401, 403, 404, 422, and a 429 after the
retries). Anything else that is not a success — a 5xx, a timeout, a reset, a garbled body, an
error body under a 200, a 4xx of a kind the API does not document for transfers — is ambiguous
and settled by listing.
"""

from __future__ import annotations

from topup_guard.errors import (
    ApiError,
    AuthenticationError,
    ForbiddenError,
    NotFoundError,
    RateLimitedError,
    RequestNotSentError,
    ValidationError,
)

_DEFINITE = (AuthenticationError, ForbiddenError, NotFoundError, ValidationError, RateLimitedError)


class LeaseLostBeforeResend(Exception):
    """The lease was lost while waiting to resend a POST that provably never arrived."""


class StoppedBeforeResend(Exception):
    """Shutdown came while waiting to resend a POST that provably never arrived."""


def is_definite_refusal(exc: BaseException) -> bool:
    """True when the error proves Vonage did not move the money."""
    if isinstance(exc, RequestNotSentError | LeaseLostBeforeResend | StoppedBeforeResend):
        return True
    if not isinstance(exc, _DEFINITE):
        return False
    status = exc.status if isinstance(exc, ApiError) else None
    # An error body under a 2xx says nothing about whether the transfer was applied.
    return status is not None and 400 <= status < 500


def refusal_text(exc: BaseException, account: str) -> str:
    """The FAILED entry's detail: what Vonage said, and that nothing moved."""
    if isinstance(exc, StoppedBeforeResend):
        return "shutdown before a resend; the earlier try provably never reached Vonage"
    if isinstance(exc, LeaseLostBeforeResend):
        return "the lease was lost before a resend; the earlier try provably never reached Vonage"
    if isinstance(exc, RequestNotSentError):
        return f"Vonage could not be reached, nothing was moved to {account}: {exc}"
    if isinstance(exc, RateLimitedError):
        return f"rate limited by Vonage on every try, nothing was moved to {account}: {exc}"
    return f"Vonage refused the transfer to {account}, nothing was moved: {exc}"


def _insufficient(exc: BaseException) -> bool:
    # Both 403s carry type "#valid-transfers"; only the detail tells them apart.
    return "insufficient" in str(exc).casefold()


def action_for(exc: BaseException, *, account: str, primary: str) -> str:
    """What a person should do about a refused transfer to ``account``."""
    if isinstance(exc, ForbiddenError) and _insufficient(exc):
        return (
            f"The primary account {primary} lacks the balance for this transfer to {account}: "
            "top it up (the guard does when its forecast says so) or lower transfer_amount in "
            "the fleet file."
        )
    if isinstance(exc, ForbiddenError):
        return (
            f"Vonage refused a transfer from {primary} to {account}: check that {account} is a "
            "subaccount of this primary with its own balance (not sharing the primary's) and "
            "that the Subaccounts API is provisioned for the account."
        )
    if isinstance(exc, ValidationError):
        return (
            f"Vonage rejected the transfer's parameters for {account}: check transfer_amount in "
            "the fleet file (a positive amount with at most two decimals)."
        )
    if isinstance(exc, AuthenticationError):
        return "Vonage rejected the credentials: check VONAGE_API_KEY and VONAGE_API_SECRET."
    if isinstance(exc, NotFoundError):
        return (
            f"Vonage does not know the key {account}: check it in the fleet file, or whether "
            "the subaccount was deleted."
        )
    return "Nothing was moved; the guard tries again on a later cycle if the account needs it."


UNCONFIRMED_ACTION = (
    "The transfer listing could not be read for the whole settle window, so the guard cannot tell "
    "whether this transfer happened; it makes no new transfer to this account until a listing "
    "answers. Check the subaccount's balance transfers in the Vonage dashboard."
)
