"""Decide whether an HTTP answer is an error, and which one. Pure: no I/O.

Vonage speaks two error dialects, and both can arrive on any host:

* legacy REST: ``{"error-code": "401", "error-code-label": "authentication failed"}`` (also the
  ``{"type": "BAD_REQUEST", "error_title": ..., "invalid_parameters": {...}}`` shape);
* RFC 7807: ``{"type": ".../api-errors#unauthorized", "title": ..., "detail": ..., "instance": ...,
  "invalid_parameters": [{"name": ..., "reason": ...}]}``.

An error body is an error whatever the HTTP status says: a 200 carrying ``error-code`` "401" must
never be read as a balance (mozilla/fxa-auth-server #1877 did exactly that). The order of the checks
in :func:`classify` is the policy; each step says why it comes where it does.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping, Sequence
from email.utils import parsedate_to_datetime
from typing import Any

from topup_guard.errors import (
    ApiError,
    AuthenticationError,
    AutoReloadDisabledError,
    ForbiddenError,
    MalformedResponseError,
    NotFoundError,
    RateLimitedError,
    ServerError,
    TopUpRefusedError,
    ValidationError,
    VonageError,
)
from topup_guard.vonage.parsing import Exchange, Response, decode_json

TOP_UP = "top-up"
_MAX_TEXT = 200
_AUTO_RELOAD_LABEL = "not auto-reload enabled"
_TOPUP_FAILED_LABEL = "topup failed"
_ERROR_KEYS = ("error_title", "title", "detail", "invalid_parameters")
_BY_STATUS: dict[int, type[ApiError]] = {
    400: ValidationError,
    401: AuthenticationError,
    403: ForbiddenError,
    404: NotFoundError,
    422: ValidationError,
    429: RateLimitedError,
}
_SECONDS = re.compile(r"\d{1,10}(\.\d{1,6})?")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]+|\s{2,}")


def parse_retry_after(value: str | None, now: float) -> float | None:
    """``Retry-After`` as seconds from ``now`` (unix time): delta-seconds or an HTTP-date."""
    if not value or not value.strip():
        return None
    text = value.strip()
    if _SECONDS.fullmatch(text):
        return float(text)
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:  # RFC 9110 dates are GMT; a naive one would be local time otherwise
        return None
    return max(0.0, when.timestamp() - now)


def _clean(text: str, redact: Sequence[str]) -> str:
    """One line, bounded, with every known secret blanked: server text can echo what we sent."""
    for secret in redact:
        if secret:
            text = text.replace(secret, "***")
    text = _CONTROL.sub(" ", text).strip()
    return text if len(text) <= _MAX_TEXT else text[: _MAX_TEXT - 1] + "…"


def _str(value: object) -> str | None:
    return value.strip() if isinstance(value, str) and value.strip() else None


def _error_code(obj: Mapping[str, Any]) -> str | None:
    """``error-code`` as text: the spec sends a string, but a number must compare the same."""
    value = obj.get("error-code")
    return None if value is None else str(value).strip()


def _is_error_body(obj: Mapping[str, Any]) -> bool:
    code = _error_code(obj)
    if code is not None and code != "200":
        return True
    kind = _str(obj.get("type"))
    return not obj.keys().isdisjoint(_ERROR_KEYS) or bool(kind and "#" in kind)


_LABEL_KEYS = ("error_title", "error-code-label", "title", "description", "message")
# A body with none of these keys carries no label, no code and no error shape: under a success
# status it is a success, whatever else it holds (the fast path of every balance poll).
_TELLING_KEYS = frozenset((*_LABEL_KEYS, *_ERROR_KEYS, "error-code", "type"))


def _label(obj: Mapping[str, Any]) -> str | None:
    """Vonage's own words: the legacy label, else the RFC 7807 title, with the detail appended.

    The key order is ruby-sdk's ``errors.rb``, which has met every legacy shape in the wild.
    """
    head = None
    for key in _LABEL_KEYS:  # a loop, not next(genexpr): this runs for every answer
        if head := _str(obj.get(key)):
            break
    detail = _str(obj.get("detail"))
    if head and detail and detail != head:
        return f"{head}: {detail}"
    return head or detail


def _code(obj: Mapping[str, Any]) -> str | None:
    """A short machine code: the legacy ``error-code``, else the ``type``'s ``#fragment``."""
    code = _error_code(obj)
    if code is not None:
        return code
    kind = _str(obj.get("type"))
    if kind is None:
        return None
    return kind.rsplit("#", 1)[1] if "#" in kind else kind


def invalid_parameters(obj: Mapping[str, Any], redact: Sequence[str] = ()) -> dict[str, str]:
    """``invalid_parameters`` as ``{name: reason}``, from a list of ``{name, reason}`` or a dict."""
    raw = obj.get("invalid_parameters")
    pairs: list[tuple[object, object]] = []
    if isinstance(raw, Mapping):
        pairs = list(raw.items())
    elif isinstance(raw, list):
        pairs = [(i.get("name"), i.get("reason")) for i in raw if isinstance(i, Mapping)]
    return {
        _clean(str(name), redact): _clean("" if reason is None else str(reason), redact)
        for name, reason in pairs
        if name is not None
    }


def _fallback_text(resp: Response, redact: Sequence[str]) -> str:
    """What to say about a body that is not a JSON object: its kind, or a short plain-text line."""
    if resp.too_large:
        return "response body too large"
    text = resp.body.decode("utf-8", "replace").strip()
    if not text:
        return "empty body"
    if text.startswith("<"):
        return f"HTML/XML body ({len(resp.body)} bytes)"
    return _clean(text, redact)


def classify(
    resp: Response,
    doc: object,
    ctx: Exchange,
    *,
    endpoint: str,
    success: Collection[int] = (200,),
    redact: Sequence[str] = (),
    now: float = 0.0,
) -> VonageError | None:
    """The error ``resp`` stands for, or ``None`` when it is a success to hand to a parser."""
    status = resp.status
    obj = doc if isinstance(doc, dict) else None
    quiet = obj is not None and obj.keys().isdisjoint(_TELLING_KEYS)
    if quiet and status in success and not resp.too_large:
        return None  # what the full path below concludes for such a body, without the text
    label = _label(obj) if obj is not None else None
    if label:
        text = _clean(label, redact)
    else:
        text = "no error text" if obj is not None else _fallback_text(resp, redact)
    kw: dict[str, Any] = {"status": status, "request_id": ctx.request_id}

    # A redirect is never Vonage's answer (ruby-sdk #28 saw a transient 302); never followed.
    if 300 <= status < 400:
        return MalformedResponseError(ctx.message("unexpected redirect, not followed"), **kw)

    # Labels that name the cause outright win over the status they came with.
    if obj is not None:
        kw["code"] = _code(obj)
        folded = (label or "").casefold()
        if folded == _AUTO_RELOAD_LABEL:
            return AutoReloadDisabledError(ctx.message(text), **kw)
        if endpoint == TOP_UP and (kw["code"] == "420" or folded == _TOPUP_FAILED_LABEL):
            return TopUpRefusedError(ctx.message(text), **kw)

    if status in success:
        if resp.too_large:
            return MalformedResponseError(ctx.message(text), **kw)
        if obj is None or not _is_error_body(obj):
            return None  # the parser decides whether the body has what it needs
        if endpoint == TOP_UP:
            # Definite only for a known refusal (matched above) or failed authentication (nothing
            # was done); any other code under a 200 says nothing about whether the charge was
            # applied, so it must be verified by balance, never recorded as "nothing charged".
            if kw["code"] == "401" and "auth" in (label or "").casefold():
                return AuthenticationError(ctx.message(text), **kw)
            code = kw.pop("code", None)
            return MalformedResponseError(
                ctx.message(f"200 carrying error-code {code or '?'}: {text}"), **kw
            )
        # An error body under a 2xx: classify by the code it carries, if it is an HTTP status.
        code = kw["code"] or ""
        cls = _class_for(int(code)) if code.isascii() and code.isdigit() else ApiError
        return _build(cls, text, ctx, obj, resp, redact, now, kw)

    # 429 and 5xx mean what they say even with an unreadable body (proxies answer those too).
    if status == 429:
        return _build(RateLimitedError, text, ctx, obj, resp, redact, now, kw)
    if status >= 500:
        return ServerError(ctx.message(text), **kw)
    if obj is None or not (400 <= status < 500):
        what = text if obj is None else f"unexpected status: {text}"
        kw.pop("code", None)
        return MalformedResponseError(ctx.message(what), **kw)
    return _build(_class_for(status), text, ctx, obj, resp, redact, now, kw)


def _class_for(status: int) -> type[ApiError]:
    return ServerError if status >= 500 else _BY_STATUS.get(status, ApiError)


def _build(
    cls: type[ApiError],
    text: str,
    ctx: Exchange,
    obj: Mapping[str, Any] | None,
    resp: Response,
    redact: Sequence[str],
    now: float,
    kw: dict[str, Any],
) -> ApiError:
    if issubclass(cls, RateLimitedError):
        retry_after = parse_retry_after(resp.headers.get("Retry-After"), now)
        return RateLimitedError(ctx.message(text), retry_after=retry_after, **kw)
    if issubclass(cls, ValidationError):
        params = invalid_parameters(obj or {}, redact)
        if params:
            text += " [" + "; ".join(f"{k}: {v}" for k, v in params.items()) + "]"
        return ValidationError(ctx.message(text), invalid_parameters=params, **kw)
    return cls(ctx.message(text), **kw)


def check(
    resp: Response,
    ctx: Exchange,
    *,
    endpoint: str,
    success: Collection[int] = (200,),
    redact: Sequence[str] = (),
    now: float = 0.0,
) -> object:
    """The decoded body of a success; raises the mapped :class:`VonageError` otherwise."""
    doc = None if resp.too_large else decode_json(resp.body)
    error = classify(resp, doc, ctx, endpoint=endpoint, success=success, redact=redact, now=now)
    if error is not None:
        raise error
    return doc
