"""Vonage's wire format: JSON with exact decimal numbers, and its two error styles.

rest.nexmo.com (balance, top-up, settings) answers errors in the legacy style
``{"error-code": "401", "error-code-label": "..."}``; api.nexmo.com (secrets, subaccounts) in
RFC 7807 ``application/problem+json``. Both are reproduced byte-for-byte in shape so that the
client's error mapping is tested against what Vonage actually sends.
"""

from __future__ import annotations

import json
import math
from decimal import Decimal
from typing import Any

from aiohttp import web

from topup_guard.sim.refusals import RefusalCode, SimRefusal

PROBLEM = "application/problem+json"
_DOCS = "https://developer.nexmo.com/api-errors"
_SECRETS = f"{_DOCS}/account/secret-management"
_SUBS = f"{_DOCS}/account/subaccounts"

# code -> (status, type, title) for api.nexmo.com refusals.
_PROBLEMS: dict[str, tuple[int, str, str]] = {
    "unauthorized": (401, f"{_DOCS}#unauthorized", "Invalid credentials supplied"),
    "invalid-api-key": (404, f"{_DOCS}#invalid-api-key", "Invalid API Key"),
    "invalid-id": (404, f"{_DOCS}#invalid-id", "Invalid ID"),
    "invalid-json": (400, f"{_DOCS}#invalid-json", "Invalid JSON"),
    "secret-validation": (400, f"{_SECRETS}#validation", "Bad Request"),
    "add-excess-secret": (403, f"{_SECRETS}#add-excess-secret", "Secret Addition Forbidden"),
    "delete-last-secret": (403, f"{_SECRETS}#delete-last-secret", "Secret Deletion Forbidden"),
    "insufficient-credit": (403, f"{_SUBS}#valid-transfers", "Transfer amount is invalid"),
    "invalid-transfer": (403, f"{_SUBS}#valid-transfers", "Invalid Transfer"),
    "transfer-validation": (422, f"{_SUBS}#validation", "Bad Request"),
    "rate-limit": (429, "https://developer.vonage.com/api-errors#rate-limit", "Rate Limit Hit"),
    "internal-error": (500, f"{_DOCS}#internal-error", "Internal Server Error"),
}
# code -> (status, error-code, error-code-label) for rest.nexmo.com refusals.
_LEGACY: dict[str, tuple[int, str, str]] = {
    "authentication-failed": (401, "401", "authentication failed"),
    "not-auto-reload-enabled": (401, "401", "not auto-reload enabled"),
    "topup-failed": (401, "420", "topup failed"),
}


def decimal_text(value: Decimal, places: int = 8) -> str:
    """A Decimal as a JSON number, at most ``places`` decimals, no exponent: ``29.18202293``."""
    q = value.quantize(Decimal(1).scaleb(-places)).normalize()
    text = format(q, "f")
    if text in ("-0", "-0.0"):
        text = "0"
    return text if "." in text else text + ".0"


def dumps(obj: object) -> str:
    """JSON where every Decimal is written as an exact number (``json`` alone cannot)."""
    marks: dict[str, str] = {}

    def swap(value: object) -> object:
        if isinstance(value, Decimal):
            mark = f"\x00{len(marks)}\x00"
            marks[mark] = decimal_text(value)
            return mark
        if isinstance(value, dict):
            return {k: swap(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [swap(v) for v in value]
        if isinstance(value, float) and not math.isfinite(value):
            return None
        return value

    text = json.dumps(swap(obj))
    for mark, number in marks.items():
        text = text.replace(json.dumps(mark), number)
    return text


def json_response(
    data: object, status: int = 200, content_type: str = "application/json"
) -> web.Response:
    return web.Response(text=dumps(data), status=status, content_type=content_type, charset="utf-8")


def problem(
    code: str,
    instance: str,
    detail: str = "",
    invalid_parameters: list[dict[str, str]] | None = None,
) -> web.Response:
    """An RFC 7807 answer for one of the ``_PROBLEMS`` codes."""
    status, type_, title = _PROBLEMS[code]
    body: dict[str, Any] = {"type": type_, "title": title, "detail": detail, "instance": instance}
    if invalid_parameters:
        body["invalid_parameters"] = invalid_parameters
    return json_response(body, status, PROBLEM)


def legacy(code: str) -> web.Response:
    """A rest.nexmo.com legacy error: ``error-code`` is a string, as Vonage sends it."""
    status, error_code, label = _LEGACY[code]
    return json_response({"error-code": error_code, "error-code-label": label}, status)


def bad_request(parameter: str, reason: str) -> web.Response:
    """The rest host's 400 for a bad form field (the shape of Vonage's top-up fixture)."""
    body = {
        "type": "BAD_REQUEST",
        "error_title": "Bad Request",
        "invalid_parameters": {parameter: reason},
    }
    return json_response(body, 400)


def refusal(exc: SimRefusal, instance: str) -> web.Response:
    """The Vonage answer for a model refusal, legacy or problem as the endpoint's host does."""
    code: RefusalCode = exc.code
    if code in _LEGACY:
        return legacy(code)
    return problem(code, instance, exc.detail, exc.invalid_parameters)


def html_error_page() -> web.Response:
    """What a proxy or load balancer in front of Vonage answers when the backend is gone."""
    page = (
        "<html><head><title>502 Bad Gateway</title></head>"
        "<body><center><h1>502 Bad Gateway</h1></center></body></html>"
    )
    return web.Response(text=page, status=502, content_type="text/html")


HUGE_BODY_BYTES = 4 * 1024 * 1024
"""Size of the ``huge_body`` fault's answer: far beyond any real Vonage answer (and the client's
1 MiB cap), small enough for a test to send many times."""


def garbage_body(kind: str, balance: Decimal, auto_reload: bool) -> web.Response:
    """A 200 for the body-spoiling fault kinds (see ``faults.py``), built from the real balance.

    ``NaN`` and ``Infinity`` are written literally (Python's ``json`` does; RFC 8259 does not
    allow them), which is what a careless server behind a proxy really sends.
    """
    flag = "true" if auto_reload else "false"
    if kind == "empty_body":
        return web.Response(body=b"", status=200, content_type="application/json")
    if kind == "huge_body":
        pad = "x" * HUGE_BODY_BYTES
        text = f'{{"value": {decimal_text(balance)}, "autoReload": {flag}, "pad": "{pad}"}}'
    elif kind == "value_string":
        text = f'{{"value": "{decimal_text(balance)}", "autoReload": {flag}}}'
    elif kind == "value_nan":
        text = f'{{"value": NaN, "autoReload": {flag}}}'
    elif kind == "value_infinity":
        text = f'{{"value": Infinity, "autoReload": {flag}}}'
    elif kind == "negative_balance":
        negative = -abs(balance) if balance != 0 else Decimal("-1")
        text = f'{{"value": {decimal_text(negative)}, "autoReload": {flag}}}'
    else:
        raise ValueError(f"not a body fault: {kind}")
    return web.Response(text=text, status=200, content_type="application/json")


def redirect(location: str = "http://127.0.0.1:9/moved") -> web.Response:
    """A 302 elsewhere. The target is a closed local port: a client that wrongly follows it
    fails at once and never reaches the internet."""
    return web.Response(status=302, headers={"Location": location})
