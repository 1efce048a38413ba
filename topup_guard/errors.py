"""The exception tree. Everything that leaves ``topup_guard.vonage`` is one of these.

```
TopupGuardError
├── ConfigError                      bad or missing settings (exit 2)
├── LedgerError                      the ledger cannot be read or written safely
├── InvalidSecretError               a new API secret fails Vonage's rules; checked before sending
├── NotificationError                a channel (Slack, webhook, PagerDuty) did not take a message;
│                                    ``retryable`` says whether sending it again may help
└── VonageError                      anything that went wrong talking to Vonage
    ├── ApiError                     Vonage answered, and the answer is an error
    │   ├── AuthenticationError      401: key/secret wrong
    │   ├── AutoReloadDisabledError  401 "not auto-reload enabled": top-up cannot work
    │   ├── TopUpRefusedError        refused outright ("topup failed"; 200 with error-code != "200")
    │   ├── RateLimitedError         429, with ``retry_after`` seconds when the server says
    │   ├── ValidationError          400/422, with ``invalid_parameters``
    │   ├── ForbiddenError           403: last secret, secret cap, unprovisioned, invalid transfer
    │   ├── NotFoundError            404: unknown api key, secret id, subaccount
    │   └── ServerError              5xx: for a POST the change may or may not have been applied
    ├── MalformedResponseError       an answer that is not what the API sends (HTML, bad JSON,
    │                                no numeric value, a redirect) — never taken for a balance
    └── TransportError               no usable answer at all
        ├── RequestNotSentError      connect failed: the request provably never reached Vonage
        └── OutcomeUnknownError      sent, then timeout or reset: a POST may have been applied
```

Messages never contain credentials, the ``trx`` or full URLs with query strings; they carry the
HTTP method, the path and Vonage's own error text.
"""

from __future__ import annotations

from collections.abc import Mapping


class TopupGuardError(Exception):
    """Base of every error this package raises on purpose."""


class ConfigError(TopupGuardError):
    """Settings are missing or invalid. ``problems`` holds one line per problem."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("\n".join(problems))


class LedgerError(TopupGuardError):
    """The ledger cannot be read or written safely; no top-up may happen."""


class InvalidSecretError(TopupGuardError):
    """A new API secret breaks Vonage's complexity rules; caught before anything is sent.

    The message states the rules and never the rejected secret.
    """


class NotificationError(TopupGuardError):
    """A channel did not take a message. The text is safe to log: no URL, token or key."""

    def __init__(self, message: str, *, retryable: bool = False) -> None:
        self.retryable = retryable
        super().__init__(message)


class VonageError(TopupGuardError):
    """Base of every failure talking to Vonage."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        request_id: str | None = None,
    ) -> None:
        self.status = status
        self.request_id = request_id
        super().__init__(message)


class ApiError(VonageError):
    """Vonage answered with an error."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        request_id: str | None = None,
        code: str | None = None,
    ) -> None:
        self.code = code
        super().__init__(message, status=status, request_id=request_id)


class AuthenticationError(ApiError):
    """The API key or secret was rejected."""


class AutoReloadDisabledError(ApiError):
    """Top-up refused because auto-reload is not enabled (or was disabled after failed payments)."""


class TopUpRefusedError(ApiError):
    """Vonage answered a top-up with a definite refusal; nothing was charged."""


class RateLimitedError(ApiError):
    """429: refused unprocessed. ``retry_after`` is the server's delay in seconds, if given."""

    def __init__(self, message: str, *, retry_after: float | None = None, **kw: object) -> None:
        self.retry_after = retry_after
        super().__init__(message, **kw)  # type: ignore[arg-type]


class ValidationError(ApiError):
    """400/422: the request was invalid. ``invalid_parameters`` maps parameter to reason."""

    def __init__(
        self,
        message: str,
        *,
        invalid_parameters: Mapping[str, str] | None = None,
        **kw: object,
    ) -> None:
        self.invalid_parameters = dict(invalid_parameters or {})
        super().__init__(message, **kw)  # type: ignore[arg-type]


class ForbiddenError(ApiError):
    """403: not allowed (last secret, secret cap, unprovisioned API, invalid transfer)."""


class NotFoundError(ApiError):
    """404: unknown API key, secret id or subaccount."""


class ServerError(ApiError):
    """5xx. For a POST the change may have been applied: verify before anything else."""


class MalformedResponseError(VonageError):
    """An answer that is not what Vonage sends. Never taken for a balance."""


class TransportError(VonageError):
    """No usable answer at all."""


class RequestNotSentError(TransportError):
    """Connecting failed: the request provably never reached Vonage. Safe to resend."""


class OutcomeUnknownError(TransportError):
    """The request was sent but no answer came (timeout, reset). A POST may have been applied."""
