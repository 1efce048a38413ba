"""Small, pure formatting helpers for Slack messages: money, rates, durations, Block Kit pieces.

Everything here returns plain ``str``/``dict`` so message tests need no Slack at all. Limits
come from Slack's Block Kit reference; text past a limit is cut with an ellipsis rather than
letting Slack reject the whole message (a rejected alert is worse than a shortened one).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

Block = dict[str, Any]

HEADER_MAX = 150  # header block: plain_text up to 150 characters
SECTION_TEXT_MAX = 3000  # section text up to 3000 characters
FIELD_TEXT_MAX = 2000  # each section field up to 2000 characters
FIELDS_MAX = 10  # a section holds at most 10 fields
CONTEXT_ELEMENTS_MAX = 10  # a context block holds at most 10 elements
FALLBACK_MAX = 3000  # keep notification text short; Slack truncates past 40 000 anyway

_CENT = Decimal("0.01")
# Keys whose values are secrets even if a caller forgot to mask them (defence in depth).
SECRET_KEY_MARKERS = ("SECRET", "TRX", "TOKEN", "WEBHOOK", "REDIS")
MASK = "****** (set)"


def eur(amount: Decimal | None) -> str:
    """``Decimal('12.345')`` -> ``'12.35 EUR'``; money is never turned into a float."""
    if amount is None:
        return "unknown"
    return f"{amount.quantize(_CENT, rounding=ROUND_HALF_UP):,.2f} EUR"


def eur_text(value: str) -> str:
    """A policy value that should be EUR (``'10'``), or the raw text when it is not a number."""
    try:
        return eur(Decimal(value))
    except (InvalidOperation, ValueError):
        return value


def rate(eur_per_second: float) -> str:
    """Spend rate as EUR/min, the unit people think in for SMS traffic."""
    if not math.isfinite(eur_per_second):
        return "unknown"
    per_min = Decimal(repr(eur_per_second)) * 60
    if per_min <= 0:
        return "0.00 EUR/min"
    if per_min < Decimal("0.005"):
        return "< 0.01 EUR/min"
    return f"{per_min.quantize(_CENT, rounding=ROUND_HALF_UP):,.2f} EUR/min"


def duration(seconds: float) -> str:
    """``250`` -> ``'4 min 10 s'``; two units at most, so it reads at a glance."""
    if math.isnan(seconds):
        return "unknown"
    if math.isinf(seconds):
        return "never"
    total = max(0, round(seconds))
    days, rest = divmod(total, 86_400)
    hours, rest = divmod(rest, 3_600)
    minutes, secs = divmod(rest, 60)
    units = [(days, "d"), (hours, "h"), (minutes, "min"), (secs, "s")]
    for i, (value, unit) in enumerate(units):
        if value or i == len(units) - 1:
            out = f"{value} {unit}"
            if i + 1 < len(units) and units[i + 1][0]:
                out += f" {units[i + 1][0]} {units[i + 1][1]}"
            return out
    return "0 s"  # pragma: no cover - the loop always returns


def exhaustion(seconds: float) -> str:
    """When the balance would hit zero at the current rate: ``'in 4 min 10 s'``."""
    if math.isinf(seconds) and seconds > 0:
        return "not forecast (no spend)"
    if math.isnan(seconds):
        return "unknown"
    if seconds <= 0:
        return "now"
    return "in " + duration(seconds)


def utc(wall: float) -> str:
    """Unix seconds as a UTC timestamp, or an empty string for 'not known' (0)."""
    if wall <= 0 or not math.isfinite(wall):
        return ""
    return datetime.fromtimestamp(wall, tz=UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def escape(text: str) -> str:
    """Escape the three characters Slack mrkdwn treats as control characters."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def is_secret_key(key: str) -> bool:
    upper = key.upper()
    return any(marker in upper for marker in SECRET_KEY_MARKERS)


def safe_policy(policy: Mapping[str, str]) -> dict[str, str]:
    """The policy with every secret-looking key masked, whatever the caller passed in."""
    out: dict[str, str] = {}
    for key, value in policy.items():
        if is_secret_key(key) and value not in ("(unset)", MASK):
            out[key] = MASK
        else:
            out[key] = value
    return out


# --- Block Kit builders --------------------------------------------------------------------


def header(text: str) -> Block:
    return {"type": "header", "text": {"type": "plain_text", "text": cut(text, HEADER_MAX)}}


def section(text: str, fields: Mapping[str, str] | None = None) -> Block:
    """A mrkdwn section; ``text`` must already be escaped, field values are escaped here."""
    block: Block = {
        "type": "section",
        "text": {"type": "mrkdwn", "text": cut(text, SECTION_TEXT_MAX)},
    }
    if fields:
        block["fields"] = [
            {"type": "mrkdwn", "text": cut(f"*{label}*\n{escape(value)}", FIELD_TEXT_MAX)}
            for label, value in list(fields.items())[:FIELDS_MAX]
        ]
    return block


def context(*lines: str) -> Block:
    """Small grey print; ``lines`` must already be escaped. Empty lines are skipped."""
    elements = [{"type": "mrkdwn", "text": cut(line, SECTION_TEXT_MAX)} for line in lines if line]
    return {"type": "context", "elements": elements[:CONTEXT_ELEMENTS_MAX]}
