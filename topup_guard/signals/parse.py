"""Pure parsing of what senders post: SMS API answers, bare balances, out-of-credit refusals.

Every function takes bytes and returns a ``Parsed`` or raises ``BadSignal`` with a bounded
``reason`` (a metric label) and one line for the sender. Nothing here reads a clock: the time
window for ``at`` is checked against the ``now_wall`` the caller passes.

Formats are sniffed from the body, not trusted to the Content-Type (senders forward answers with
whatever header their HTTP library sets): ``{`` is JSON, ``<`` is XML, anything else is
``application/x-www-form-urlencoded``.

Rules that keep a hostile body from changing anything:
- a balance is a plain decimal string (``"12.34"``, up to 12 decimals) or a JSON number, finite,
  in [-1e6, 1e9]; exponents in strings, ``NaN``, ``Infinity``, booleans and empty strings are
  refused;
- ``at`` is finite unix seconds, at most ``MAX_AGE_S`` old and ``MAX_SKEW_S`` in the future;
- XML with a DTD (``<!DOCTYPE`` / ``<!ENTITY``) is refused before parsing, so no entity expansion;
- at most ``MAX_MESSAGES`` entries per SMS answer; one reading per answer (all parts of a
  multi-part message carry the same per-request ``remaining-balance``; the lowest is kept).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import parse_qs

if TYPE_CHECKING:  # ElementTree (and expat) load with the first XML answer, not with the guard
    import xml.etree.ElementTree as ET

Reason = Literal[
    "malformed",
    "wrong_shape",
    "bad_balance",
    "bad_at",
    "not_out_of_credit",
    "too_large",
    "unauthorized",
    "queue_full",
    "not_found",
]
REASONS: tuple[Reason, ...] = (
    "malformed",
    "wrong_shape",
    "bad_balance",
    "bad_at",
    "not_out_of_credit",
    "too_large",
    "unauthorized",
    "queue_full",
    "not_found",
)
MAX_MESSAGES = 256
MAX_AGE_S = 3600.0
MAX_SKEW_S = 60.0
MIN_BALANCE = Decimal("-1000000")
MAX_BALANCE = Decimal("1000000000")
_PLAIN_DECIMAL = re.compile(r"-?[0-9]{1,10}(\.[0-9]{1,12})?")
OUT_OF_CREDIT_SMS_STATUS = "9"
OUT_OF_CREDIT_CODE = "1070"


class BadSignal(ValueError):
    """A body that changes nothing. ``reason`` is a metric label; ``str()`` is one line for the
    sender."""

    def __init__(self, reason: Reason, message: str) -> None:
        super().__init__(message)
        self.reason: Reason = reason


@dataclass(frozen=True, slots=True)
class Parsed:
    """A valid body: balances (with the sender's time, or None for "arrival"), counters."""

    readings: tuple[tuple[float | None, Decimal], ...] = ()
    refusals: int = 0
    successes: int = 0


# --- values ------------------------------------------------------------------------------------
def parse_balance_value(value: object, field: str = "balance") -> Decimal:
    """A balance from a JSON string/number or form text; BadSignal("bad_balance") otherwise."""
    if isinstance(value, bool) or not isinstance(value, str | int | Decimal):
        raise BadSignal("bad_balance", f'{field}: want a decimal string such as "12.34"')
    if isinstance(value, Decimal):  # a JSON number: 0.00000001 arrives as Decimal("1E-8")
        if not value.is_finite():
            raise BadSignal("bad_balance", f"{field}: not a finite number")
        value = format(value, "f")
    text = str(value).strip()
    if not _PLAIN_DECIMAL.fullmatch(text):
        raise BadSignal("bad_balance", f"{field}: not a plain decimal number (like 12.34)")
    try:
        balance = Decimal(text)
    except InvalidOperation:  # unreachable after the pattern, kept as a guard
        raise BadSignal("bad_balance", f"{field}: not a decimal number") from None
    if not MIN_BALANCE <= balance <= MAX_BALANCE:
        raise BadSignal("bad_balance", f"{field}: outside [{MIN_BALANCE}, {MAX_BALANCE}] EUR")
    return balance


def parse_at(value: object, now_wall: float) -> float:
    """Unix seconds within [now - MAX_AGE_S, now + MAX_SKEW_S]; BadSignal("bad_at") otherwise."""
    if isinstance(value, bool) or not isinstance(value, str | int | float | Decimal):
        raise BadSignal("bad_at", "at: want unix seconds, such as 1764489600.5")
    try:
        at = float(value)
    except (ValueError, OverflowError):
        raise BadSignal("bad_at", "at: want unix seconds, such as 1764489600.5") from None
    if not math.isfinite(at):
        raise BadSignal("bad_at", "at: not a finite number")
    if at > now_wall + MAX_SKEW_S:
        raise BadSignal("bad_at", f"at: more than {MAX_SKEW_S:.0f} s in the future")
    if at < now_wall - MAX_AGE_S:
        raise BadSignal("bad_at", f"at: more than {MAX_AGE_S:.0f} s old")
    return at


# --- formats -----------------------------------------------------------------------------------
def _kind(body: bytes) -> str:
    head = body.lstrip()[:1]
    return "json" if head in (b"{", b"[") else "xml" if head == b"<" else "form"


def _json(body: bytes) -> dict[str, Any]:
    def no_constants(name: str) -> None:
        raise ValueError(name)

    try:
        data = json.loads(body, parse_float=Decimal, parse_constant=no_constants)
    except (ValueError, RecursionError, UnicodeDecodeError):
        raise BadSignal("malformed", "body is not valid JSON") from None
    if not isinstance(data, dict):
        raise BadSignal("wrong_shape", "body must be a JSON object")
    return data


def _form(body: bytes) -> dict[str, list[str]]:
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise BadSignal("malformed", "body is not UTF-8 form data") from None
    try:
        fields = parse_qs(text, strict_parsing=True, max_num_fields=2 * MAX_MESSAGES + 8)
    except ValueError:
        raise BadSignal("malformed", "body is not JSON, XML or form data") from None
    return fields


def _xml(body: bytes) -> ET.Element:
    import xml.etree.ElementTree as ET  # lazily: see the import block

    lowered = body.lower()
    if b"<!doctype" in lowered or b"<!entity" in lowered:
        raise BadSignal("malformed", "XML with a DTD is not accepted")
    try:
        return ET.fromstring(body)  # noqa: S314 - no DTD, hence no entity expansion
    except ET.ParseError:
        raise BadSignal("malformed", "body is not well-formed XML") from None


# --- POST /v1/signals/sms ------------------------------------------------------------------------
def _sms_result(messages: list[tuple[str, object | None]]) -> Parsed:
    """``messages``: (status, remaining-balance or None) per entry of the answer."""
    if not messages:
        raise BadSignal("wrong_shape", "messages: empty; want the SMS API answer as received")
    if len(messages) > MAX_MESSAGES:
        raise BadSignal("wrong_shape", f"messages: more than {MAX_MESSAGES} entries")
    balances: list[Decimal] = []
    successes = refusals = 0
    for status, remaining in messages:
        if status == "0":
            successes += 1
            if remaining is not None:
                balances.append(parse_balance_value(remaining, "remaining-balance"))
        elif status == OUT_OF_CREDIT_SMS_STATUS:
            refusals += 1
    readings = ((None, min(balances)),) if balances else ()
    return Parsed(readings, refusals, successes)


def _status(value: object) -> str:
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise BadSignal("wrong_shape", 'messages[].status: want a string such as "0"')
    return str(value).strip()


def parse_sms(body: bytes) -> Parsed:
    """An SMS API answer (``/sms/json`` JSON, ``/sms/xml`` XML, or flat form fields)."""
    kind = _kind(body)
    if kind == "json":
        data = _json(body)
        entries = data.get("messages")
        if not isinstance(entries, list):
            raise BadSignal("wrong_shape", "messages: missing; want the SMS API answer as received")
        if len(entries) > MAX_MESSAGES:
            raise BadSignal("wrong_shape", f"messages: more than {MAX_MESSAGES} entries")
        if not all(isinstance(m, dict) and "status" in m for m in entries):
            raise BadSignal("wrong_shape", "messages[]: every entry needs a status")
        return _sms_result([(_status(m["status"]), m.get("remaining-balance")) for m in entries])
    if kind == "xml":
        root = _xml(body)
        found = root.iter("message")
        messages: list[tuple[str, object | None]] = []
        for m in found:
            if len(messages) > MAX_MESSAGES:
                break
            status = m.findtext("status")
            if status is None:
                raise BadSignal("wrong_shape", "message: every entry needs a status")
            messages.append((status.strip(), m.findtext("remainingBalance")))
        return _sms_result(messages)
    fields = _form(body)
    statuses = fields.get("status", [])
    if not statuses:
        raise BadSignal("wrong_shape", "status: missing; want the SMS API answer as received")
    remaining = fields.get("remaining-balance", [])
    pairs: list[tuple[str, object | None]] = [(s.strip(), None) for s in statuses]
    if remaining and "0" in (s for s, _ in pairs):
        first_ok = next(i for i, (s, _) in enumerate(pairs) if s == "0")
        # Flat fields cannot say which part a balance belongs to; they are one snapshot anyway.
        for value in remaining:
            parse_balance_value(value, "remaining-balance")
        pairs[first_ok] = ("0", min(remaining, key=Decimal))
    return _sms_result(pairs)


# --- POST /v1/signals/balance --------------------------------------------------------------------
def parse_balance(body: bytes, now_wall: float) -> Parsed:
    """``{"balance": "12.34", "at": 1764489600.5}`` (JSON or form); ``at`` is optional."""
    if _kind(body) == "json":
        data: dict[str, Any] = _json(body)
    elif _kind(body) == "form":
        data = {k: v[-1] for k, v in _form(body).items()}
    else:
        raise BadSignal("malformed", 'want JSON such as {"balance": "12.34"}')
    if "balance" not in data:
        raise BadSignal("wrong_shape", 'balance: missing; want {"balance": "12.34"}')
    balance = parse_balance_value(data["balance"])
    at = parse_at(data["at"], now_wall) if data.get("at") is not None else None
    return Parsed(((at, balance),))


# --- POST /v1/signals/refusal --------------------------------------------------------------------
def _is_out_of_credit(data: dict[str, Any]) -> bool:
    code = data.get("code", data.get("error_code"))
    if not isinstance(code, bool) and isinstance(code, str | int) and str(code) == "1070":
        return True
    status = data.get("status")
    if isinstance(status, str | int) and str(status).strip() == OUT_OF_CREDIT_SMS_STATUS:
        return True
    kind = data.get("type")
    if isinstance(kind, str):
        tail = kind.strip().rstrip("/").lower()
        return tail.endswith(("low-balance", "out-of-credit", "#1070", "/1070"))
    return False


def parse_refusal(body: bytes) -> Parsed:
    """A Messages API error (code 1070), an RFC 7807 problem whose type ends in ``low-balance`` or
    ``out-of-credit``, ``{"code": "1070"}`` or ``{"status": "9"}``: one out-of-credit refusal.
    Other errors are refused as ``not_out_of_credit``."""
    kind = _kind(body)
    if kind == "json":
        data: dict[str, Any] = _json(body)
    elif kind == "form":
        data = {k: v[-1] for k, v in _form(body).items()}
    else:
        raise BadSignal("malformed", 'want JSON such as {"code": "1070"}')
    if not _is_out_of_credit(data):
        raise BadSignal(
            "not_out_of_credit",
            "not an out-of-credit refusal (want code 1070, a low-balance problem type or status 9)",
        )
    return Parsed(refusals=1)


__all__ = [
    "MAX_MESSAGES",
    "REASONS",
    "BadSignal",
    "Parsed",
    "Reason",
    "parse_at",
    "parse_balance",
    "parse_balance_value",
    "parse_refusal",
    "parse_sms",
]
