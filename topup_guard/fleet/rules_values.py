"""What one value of the fleet file may be: money, counts, switches, patterns, and near-miss names.

Pure functions that raise :class:`BadValue` with the rule the value breaks (which is also the fix:
each rule ends with a valid example), so ``rules.py`` only has to say where the value was.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Iterable
from decimal import Decimal, InvalidOperation

_SHOW_AT_MOST = 40  # characters of a bad value quoted in a message
_SUGGEST = 0.6  # difflib's default cutoff: below it no suggestion is better than a wrong one


class BadValue(ValueError):
    """A value breaks its rule; the message is the rule, with an example of a valid value."""


def money(value: object, *, zero_ok: bool = False) -> Decimal:
    """EUR from a TOML integer, float or string ("12.50"), read as ``Decimal(str(value))``.

    Cents are the smallest unit Vonage moves in a transfer, so a third decimal is a typo, never
    rounded away. Booleans are refused although Python counts them as integers.
    """
    lowest = "of 0 or more" if zero_ok else "greater than 0"
    rule = f"must be an amount in EUR {lowest} with at most 2 decimals, such as 12.50"
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise BadValue(rule)
    if isinstance(value, float) and not math.isfinite(value):
        raise BadValue(rule)
    try:
        amount = Decimal(str(value).strip())
    except InvalidOperation:
        raise BadValue(rule) from None
    if not amount.is_finite() or amount < 0 or (amount == 0 and not zero_ok):
        raise BadValue(rule)
    exponent = amount.normalize().as_tuple().exponent
    if isinstance(exponent, int) and exponent < -2:
        raise BadValue("must have at most 2 decimals (cents), such as 12.50")
    return amount


def count(value: object) -> int:
    """A cap: a TOML integer of 1 or more (0 would forbid every transfer; turn an account off
    with ``exclude = true`` instead)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise BadValue("must be a whole number of 1 or more, such as 6")
    return value


def flag(value: object) -> bool:
    if not isinstance(value, bool):
        raise BadValue("must be true or false (without quotes)")
    return value


def pattern(value: object) -> str:
    """A key or name pattern: ``*`` any run of characters, ``?`` one, ``[ab]`` one of these;
    a text without them matches exactly itself."""
    if not isinstance(value, str) or not value.strip():
        raise BadValue('must be a non-empty text in quotes, such as "qwer1234" or "test-*"')
    return value


def shown(value: object) -> str:
    """A value as it would be written in TOML, cut short: messages quote what the file said."""
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, str):
        text = f'"{value}"'
    elif isinstance(value, dict):
        text = "a table"
    elif isinstance(value, list):
        text = "an array"
    else:
        text = str(value)
    return text if len(text) <= _SHOW_AT_MOST else text[: _SHOW_AT_MOST - 1] + "…"


def closest(name: str, known: Iterable[str]) -> str | None:
    """The known name a typo most likely meant, or None when nothing is close."""
    found = difflib.get_close_matches(name, sorted(known), n=1, cutoff=_SUGGEST)
    return found[0] if found else None
