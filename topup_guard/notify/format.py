"""Small, pure formatting helpers for messages: money, rates, durations, times, masking.

Everything here returns plain ``str`` so message tests need no channel at all. People read one
rate unit (EUR/min) and relative times that never say "in 0 s".
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

FALLBACK_MAX = 3000  # keep notification text short; Slack truncates past 40 000 anyway

_CENT = Decimal("0.01")
# Keys whose values are secrets even if a caller forgot to mask them (defence in depth).
SECRET_KEY_MARKERS = ("SECRET", "TRX", "TOKEN", "WEBHOOK", "REDIS", "ROUTING_KEY")
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


def relative(seconds: float) -> str:
    """``'in 4 min 10 s'``, or ``'now'`` for anything that rounds to less than a second."""
    if math.isnan(seconds):
        return "unknown"
    if math.isinf(seconds):
        return "never" if seconds > 0 else "now"
    if round(seconds) < 1:
        return "now"
    return "in " + duration(seconds)


def exhaustion(seconds: float) -> str:
    """When the balance would hit zero at the current rate: ``'in 4 min 10 s'``."""
    if math.isinf(seconds) and seconds > 0:
        return "not forecast (no spend)"
    return relative(seconds)


def at_time(wall: float, now_wall: float) -> str:
    """A future moment for people: ``'at 15:42 UTC (in 12 min)'``, the date added past a day."""
    if not math.isfinite(wall) or wall <= 0:
        return "at an unknown time"
    if now_wall > 0 and wall - now_wall < 1:
        return "now"
    moment = datetime.fromtimestamp(wall, tz=UTC)
    same_day = now_wall > 0 and moment.date() == datetime.fromtimestamp(now_wall, tz=UTC).date()
    shown = moment.strftime("%H:%M UTC" if same_day else "%Y-%m-%d %H:%M UTC")
    return f"at {shown} ({relative(wall - now_wall)})" if now_wall > 0 else f"at {shown}"


# "0.05 EUR/s" inside texts built elsewhere (decision reasons): shown as EUR/min like the rest.
_PER_SECOND = re.compile(r"(?<![\w.])(\d+(?:\.\d+)?(?:[eE][-+]?\d+)?) EUR/s\b")


def per_minute_text(text: str) -> str:
    """``'at 0.05 EUR/s'`` -> ``'at 3.00 EUR/min'``: one rate unit in every message."""
    return _PER_SECOND.sub(lambda m: rate(float(m.group(1))), text)


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
