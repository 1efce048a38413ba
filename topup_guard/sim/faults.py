"""Fault injection: make the next N calls of an endpoint fail the way networks and Vonage fail.

Each kind says whether the change is applied (the part a money-safe client must get right):

| kind              | answer                                         | applied? |
|-------------------|------------------------------------------------|----------|
| error_500_before  | 500 problem+json                               | no       |
| error_500_after   | 500 problem+json                               | yes      |
| timeout_after     | no answer for ``delay`` s, then the connection drops | yes |
| reset_before      | connection reset                               | no       |
| reset_after       | connection reset                               | yes      |
| rate_limit        | 429 problem+json with ``Retry-After``          | no       |
| malformed_json    | 200 with a truncated JSON body                 | yes      |
| html_error        | 502 text/html error page (a proxy in the way)  | no       |
| slow              | the normal answer, after ``delay`` s           | yes      |
| empty_body        | 200 with an empty body                         | yes      |
| huge_body         | 200 with a JSON body of several MB             | yes      |
| value_string      | 200 ``{"value": "12.5", ...}`` (a string)      | yes      |
| value_nan         | 200 ``{"value": NaN, ...}`` (not JSON)         | yes      |
| value_infinity    | 200 ``{"value": Infinity, ...}`` (not JSON)    | yes      |
| negative_balance  | 200 ``{"value": -12.5, ...}``: a postpaid debt | yes      |
| redirect          | 302 to another URL (a proxy or a misrouted host) | no     |
| stale             | 200 with the balance answered ``delay`` s earlier (a cache) | yes |
| value_absurd      | 200 ``{"value": 1e16, ...}``: valid JSON, impossible balance | yes |
| value_glitch      | 200 ``{"value": <value>, ...}`` with the fault's ``value`` verbatim | yes |

The ``value_*`` kinds and ``negative_balance`` answer a balance-shaped body on any endpoint (on
``top-up`` that is a 200 without ``error-code`` "200": garbage). ``negative_balance`` is the one
legitimate answer among them — postpaid accounts go below zero — and shows the real balance
mirrored below zero (``-|balance|``, ``-1.0`` at zero), so a client must accept it as a balance.

Endpoint ``balance-transfers`` is both the transfer (POST) and its listing (GET): a fault on it
hits whichever call comes next. ``balance-transfers-post`` hits the transfer only and
``balance-transfers-list`` the listing only (a fleet guard settles a doubtful transfer by
listing, so "the listing fails too" is a case of its own).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from decimal import Decimal
from typing import Any, Literal, get_args

FaultKind = Literal[
    "error_500_before",
    "error_500_after",
    "timeout_after",
    "reset_before",
    "reset_after",
    "rate_limit",
    "malformed_json",
    "html_error",
    "slow",
    "empty_body",
    "huge_body",
    "value_string",
    "value_nan",
    "value_infinity",
    "negative_balance",
    "redirect",
    "stale",
    "value_absurd",
    "value_glitch",
]
FAULT_KINDS: tuple[str, ...] = get_args(FaultKind)
ENDPOINTS = (
    "get-balance",
    "top-up",
    "settings",
    "secrets",
    "subaccounts",
    "balance-transfers",
    "balance-transfers-post",
    "balance-transfers-list",
    "sms",
)
BEFORE_KINDS = frozenset(
    {"error_500_before", "reset_before", "rate_limit", "html_error", "slow", "redirect"}
)
# Balance-shaped answers that are valid JSON but not the current balance (judged by the guard).
READING_KINDS = frozenset({"stale", "value_absurd", "value_glitch"})
# Kinds that replace a handled answer's body: the change is applied, the answer is spoilt.
BODY_KINDS = frozenset(
    {"empty_body", "huge_body", "value_string", "value_nan", "value_infinity", "negative_balance"}
)


@dataclass(slots=True)
class Fault:
    """``count`` more calls of ``endpoint`` (or ``*``) fail with ``kind``."""

    endpoint: str
    kind: FaultKind
    count: int = 1
    retry_after: float = 1.0
    delay: float = 30.0
    value: str = "1E+2"  # value_glitch: the JSON number text to answer

    @property
    def before(self) -> bool:
        """True when the fault replaces the call: the change is not applied."""
        return self.kind in BEFORE_KINDS

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def parse_fault(data: object) -> Fault:
    """A fault from the control API's JSON; ValueError says what is wrong."""
    if not isinstance(data, dict):
        raise ValueError("body must be a JSON object")
    unknown = sorted(set(data) - {"endpoint", "kind", "count", "retry_after", "delay", "value"})
    if unknown:
        raise ValueError(f"unknown key '{unknown[0]}'")
    endpoint, kind = data.get("endpoint", "*"), data.get("kind")
    if endpoint != "*" and endpoint not in ENDPOINTS:
        raise ValueError(f"endpoint must be '*' or one of {', '.join(ENDPOINTS)}")
    if kind not in FAULT_KINDS:
        raise ValueError(f"kind must be one of {', '.join(FAULT_KINDS)}")
    count, retry_after, delay = (
        data.get("count", 1),
        data.get("retry_after", 1.0),
        data.get("delay", 30.0),
    )
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise ValueError("count must be a positive integer")
    for name, value in (("retry_after", retry_after), ("delay", delay)):
        if isinstance(value, bool) or not isinstance(value, int | float | Decimal) or value < 0:
            raise ValueError(f"{name} must be a non-negative number")
    value = str(data.get("value", "1E+2"))
    if not _number_text(value):
        raise ValueError("value must be a JSON number, e.g. 1E+2 or -1e-7")
    return Fault(endpoint, kind, count, float(retry_after), float(delay), value)


def _number_text(text: str) -> bool:
    import re

    return re.fullmatch(r"-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?", text) is not None


class FaultInjector:
    """The active faults, consumed one call at a time; an exact endpoint wins over ``*``."""

    def __init__(self) -> None:
        self._faults: list[Fault] = []

    def add(self, fault: Fault) -> None:
        self._faults.append(fault)

    def clear(self) -> None:
        self._faults.clear()

    def active(self) -> list[dict[str, Any]]:
        return [f.as_dict() for f in self._faults]

    def take(self, endpoint: str, *also: str) -> Fault | None:
        """The fault for this call of ``endpoint`` (or, failing that, of the names in ``also``,
        in order), if any, spending one of its count."""
        match = None
        for name in (endpoint, *also):
            match = match or next((f for f in self._faults if f.endpoint == name), None)
        match = match or next((f for f in self._faults if f.endpoint == "*"), None)
        if match is None:
            return None
        match.count -= 1
        if match.count <= 0:
            self._faults.remove(match)
        return Fault(match.endpoint, match.kind, 1, match.retry_after, match.delay, match.value)
