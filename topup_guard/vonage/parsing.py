"""Turn Vonage's success bodies into model values. Pure: no I/O, testable without HTTP.

Every function here takes an already-decoded JSON document (see :func:`decode_json`) and either
returns a model value or raises :class:`~topup_guard.errors.MalformedResponseError`. Money is parsed
as ``Decimal`` straight from the JSON text, so ``29.18202293`` never passes through a binary float.
Deciding whether a response is an *error* at all is :mod:`topup_guard.vonage.errormap`'s job; these
functions run only after it has passed the response as a success.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from topup_guard.errors import MalformedResponseError
from topup_guard.model import (
    AccountSettings,
    Balance,
    Secret,
    Subaccount,
    SubaccountsOverview,
    Transfer,
)


@dataclass(frozen=True, slots=True)
class Response:
    """What the transport read: status, headers and at most the body cap.

    ``too_large`` is set (and ``body`` left empty) when the body exceeded the cap, so a huge answer
    is never buffered and never parsed.
    """

    status: int
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes = b""
    too_large: bool = False

    @property
    def request_id(self) -> str | None:
        """Vonage's ``X-Request-Id``, for correlating with their support."""
        value = self.headers.get("X-Request-Id") or self.headers.get("x-request-id")
        return value or None


@dataclass(frozen=True, slots=True)
class Exchange:
    """Which call an answer belongs to, for error messages: never a query string or credential."""

    method: str
    path: str
    status: int | None = None
    request_id: str | None = None

    def message(self, text: str) -> str:
        """``"<METHOD> <path>: <text> (HTTP <status>)"``, the one shape of every error message."""
        suffix = f" (HTTP {self.status})" if self.status is not None else ""
        return f"{self.method} {self.path}: {text}{suffix}"


class _NonStandardConstant(ValueError):
    """``NaN``/``Infinity`` in a body: not JSON (RFC 8259) and never a balance."""


def _reject_constant(name: str) -> Any:
    raise _NonStandardConstant(name)


# One decoder for every body: json.loads with hooks builds a new one (and its scanner) per call.
_DECODER = json.JSONDecoder(parse_float=Decimal, parse_int=Decimal, parse_constant=_reject_constant)


def decode_json(body: bytes) -> object | None:
    """Parse ``body`` as JSON whatever the Content-Type claims; ``None`` if it is not JSON.

    Every number becomes a ``Decimal`` (ints included, so ``10`` and ``10.0`` look alike), and the
    non-standard constants ``NaN``/``Infinity`` make the whole body unparseable. The encoding is
    detected as ``json.loads`` does (UTF-8, -16 or -32, with or without a BOM).
    """
    if not body.strip():
        return None
    try:
        text = body.decode(json.detect_encoding(body), "surrogatepass")
        doc: object = _DECODER.decode(text)
        return doc
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None


def _malformed(what: str, ctx: Exchange) -> MalformedResponseError:
    return MalformedResponseError(ctx.message(what), status=ctx.status, request_id=ctx.request_id)


def _object(doc: object, ctx: Exchange, what: str = "body") -> dict[str, Any]:
    if not isinstance(doc, dict):
        raise _malformed(f"{what} is not a JSON object", ctx)
    return doc


def _money(value: object, ctx: Exchange, name: str) -> Decimal:
    """A JSON number as a finite Decimal. Strings, booleans, null and NaN are all refused."""
    if not isinstance(value, Decimal):
        kind = "missing" if value is None else f"a {type(value).__name__}, not a JSON number"
        raise _malformed(f"'{name}' is {kind}", ctx)
    if not value.is_finite():
        raise _malformed(f"'{name}' is not finite", ctx)
    return value


def _opt_money(value: object, ctx: Exchange, name: str) -> Decimal | None:
    """Like :func:`_money`, but null (a shared balance, an absent total) is allowed."""
    return None if value is None else _money(value, ctx, name)


def _opt_str(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _opt_int(value: object) -> int | None:
    """Integral JSON numbers (decoded as Decimal) as int; anything else as None."""
    if isinstance(value, Decimal) and value.is_finite() and value == value.to_integral_value():
        return int(value)
    return None


def _required_str(obj: Mapping[str, Any], ctx: Exchange, *names: str) -> str:
    """The first of ``names`` present as a non-empty string (names the spec and SDKs differ on)."""
    for name in names:
        value = obj.get(name)
        if isinstance(value, str) and value:
            return value
    raise _malformed(f"'{names[0]}' is missing or not a string", ctx)


def _embedded_list(doc: Mapping[str, Any], key: str, ctx: Exchange) -> list[Any]:
    """``_embedded.<key>`` of a HAL collection; an absent collection is an empty one."""
    embedded = doc.get("_embedded", {})
    items = _object(embedded, ctx, "'_embedded'").get(key, [])
    if not isinstance(items, list):
        raise _malformed(f"'_embedded.{key}' is not a list", ctx)
    return items


def parse_balance(doc: object, ctx: Exchange) -> Balance:
    """``{"value": 10.28, "autoReload": false}``. Negative values (postpaid) are valid balances."""
    obj = _object(doc, ctx)
    value = _money(obj.get("value"), ctx, "value")
    auto_reload = obj.get("autoReload")
    if auto_reload is not None and not isinstance(auto_reload, bool):
        raise _malformed("'autoReload' is not a boolean", ctx)
    return Balance(value=value, auto_reload=auto_reload, request_id=ctx.request_id)


def parse_top_up(doc: object, ctx: Exchange) -> None:
    """Success is exactly ``{"error-code": "200", ...}``; an empty or odd 200 proves nothing."""
    obj = _object(doc, ctx)
    if str(obj.get("error-code")) != "200":
        raise _malformed('a 200 without error-code "200" does not confirm the top-up', ctx)


def parse_settings(doc: object, ctx: Exchange) -> AccountSettings:
    """Hyphenated keys per the spec; camelCase variants accepted since casing is unverified."""
    obj = _object(doc, ctx)
    return AccountSettings(
        mo_callback_url=_opt_str(obj.get("mo-callback-url", obj.get("moCallbackUrl"))),
        dr_callback_url=_opt_str(obj.get("dr-callback-url", obj.get("drCallbackUrl"))),
        max_outbound_request=_opt_int(obj.get("max-outbound-request")),
        max_inbound_request=_opt_int(obj.get("max-inbound-request")),
        max_calls_per_second=_opt_int(obj.get("max-calls-per-second")),
    )


def parse_secret(doc: object, ctx: Exchange) -> Secret:
    obj = _object(doc, ctx, "secret")
    return Secret(
        id=_required_str(obj, ctx, "id"), created_at=_opt_str(obj.get("created_at")) or ""
    )


def parse_secrets(doc: object, ctx: Exchange) -> list[Secret]:
    return [parse_secret(item, ctx) for item in _embedded_list(_object(doc, ctx), "secrets", ctx)]


def parse_subaccount(doc: object, ctx: Exchange) -> Subaccount:
    """One account object; ``balance``/``credit_limit`` are null when the primary's is shared."""
    obj = _object(doc, ctx, "account")
    return Subaccount(
        api_key=_required_str(obj, ctx, "api_key"),
        name=_opt_str(obj.get("name")),
        balance=_opt_money(obj.get("balance"), ctx, "balance"),
        credit_limit=_opt_money(obj.get("credit_limit"), ctx, "credit_limit"),
        use_primary_account_balance=obj.get("use_primary_account_balance") is True,
        suspended=obj.get("suspended") is True,
        created_at=_opt_str(obj.get("created_at")),
    )


def parse_subaccounts(doc: object, ctx: Exchange) -> SubaccountsOverview:
    obj = _object(doc, ctx)
    embedded = _object(obj.get("_embedded"), ctx, "'_embedded'")
    return SubaccountsOverview(
        primary=parse_subaccount(
            _object(embedded.get("primary_account"), ctx, "'_embedded.primary_account'"), ctx
        ),
        subaccounts=tuple(
            parse_subaccount(item, ctx) for item in _embedded_list(obj, "subaccounts", ctx)
        ),
        total_balance=_opt_money(obj.get("total_balance"), ctx, "total_balance"),
        total_credit_limit=_opt_money(obj.get("total_credit_limit"), ctx, "total_credit_limit"),
    )


_TRANSFER_KEYS = frozenset(
    {"id", "balance_transfer_id", "from", "to", "amount", "reference", "created_at"}
)


def parse_transfer(doc: object, ctx: Exchange) -> Transfer:
    """Recorded answers say ``id``, the spec says ``balance_transfer_id``: accept both."""
    obj = _object(doc, ctx, "transfer")
    amount = _money(obj.get("amount"), ctx, "amount")
    return Transfer(
        id=_required_str(obj, ctx, "id", "balance_transfer_id"),
        from_key=_required_str(obj, ctx, "from"),
        to_key=_required_str(obj, ctx, "to"),
        amount=amount,
        reference=_opt_str(obj.get("reference")),
        created_at=_opt_str(obj.get("created_at")),
        extra={k: v for k, v in obj.items() if k not in _TRANSFER_KEYS},
    )


def parse_transfers(doc: object, ctx: Exchange) -> list[Transfer]:
    items = _embedded_list(_object(doc, ctx), "balance_transfers", ctx)
    return [parse_transfer(item, ctx) for item in items]
