"""Request bodies, built exactly and checked before anything is sent. Pure.

Form fields use the spec's casing (``moCallBackUrl``, capital B, as the Node, Ruby, Java and PHP
SDKs send it). JSON bodies are written by hand where money is involved: ``json.dumps`` cannot
emit a ``Decimal`` as a number, and a float would round the amount.
"""

from __future__ import annotations

import base64
import json
import re
from decimal import Decimal

COMPLEXITY_RULES = (
    "the new API secret must be 8 to 25 characters with at least one lowercase letter, "
    "one uppercase letter and one digit"
)
_SECRET_SHAPE = re.compile(r"(?=.*[a-z])(?=.*[A-Z])(?=.*[0-9]).{8,25}", re.DOTALL)


def secret_is_valid(secret: str) -> bool:
    """Vonage's published complexity rule (ASCII classes, like the Python SDK's check)."""
    return bool(_SECRET_SHAPE.fullmatch(secret))


def secret_json(secret: str) -> str:
    return json.dumps({"secret": secret})


def settings_form(
    mo_callback_url: str | None,
    dr_callback_url: str | None,
    http_forward_method: str | None,
) -> dict[str, str]:
    """Only the fields given; an empty string is sent, because it clears the value."""
    fields = {
        "moCallBackUrl": mo_callback_url,
        "drCallBackUrl": dr_callback_url,
        "httpForwardMethod": http_forward_method,
    }
    return {name: value for name, value in fields.items() if value is not None}


def transfer_json(from_key: str, to_key: str, amount: Decimal, reference: str | None) -> str:
    """``{"from", "to", "amount", "reference"}`` with ``amount`` as an exact JSON number."""
    if not isinstance(amount, Decimal) or not amount.is_finite() or amount <= 0:
        raise ValueError("amount must be a positive, finite Decimal")
    if not from_key or not to_key:
        raise ValueError("from_key and to_key are required")
    parts = [
        f'"from": {json.dumps(from_key)}',
        f'"to": {json.dumps(to_key)}',
        f'"amount": {amount:f}',
    ]
    if reference is not None:
        parts.append(f'"reference": {json.dumps(reference)}')
    return "{" + ", ".join(parts) + "}"


def basic_authorization(api_key: str, api_secret: str) -> str:
    """The ``Authorization`` header value for HTTP Basic auth (RFC 7617, UTF-8).

    Built here rather than with ``aiohttp.BasicAuth``, which aiohttp 3.14 deprecates.
    """
    token = base64.b64encode(f"{api_key}:{api_secret}".encode()).decode("ascii")
    return f"Basic {token}"
