"""The fleet trace: spend per account over time, one CSV for a primary and its subaccounts.

Format (``t,account,amount``)::

    t,account,amount
    0,primary,0.0075
    12.5,sub00001,0.15

``t`` is seconds from the start (finite, >= 0, non-decreasing down the file), ``account`` is a
subaccount's API key or ``primary``, ``amount`` the EUR debited at that instant (>= 0), served
whole if the account's balance covers it, else refused whole. Errors name the line and the column,
as the single-account trace's do, so a bad export can be fixed without guessing.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable, Mapping, Sequence
from decimal import Decimal, InvalidOperation
from pathlib import Path

from topup_guard.errors import ConfigError

PRIMARY = "primary"
HEADER = ("t", "account", "amount")

FleetTrace = dict[str, list[tuple[float, Decimal]]]


class FleetTraceError(ConfigError):
    """A fleet trace problem; one line per problem, naming the file, line and column."""


def read_fleet_trace(path: str | Path) -> FleetTrace:
    """Events per account (``primary`` or a subaccount key), each list in time order."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise FleetTraceError([f"{path}: cannot read ({exc.strerror})"]) from None
    return parse_fleet_trace(text.splitlines(), source=str(path))


def parse_fleet_trace(lines: Iterable[str], *, source: str = "fleet trace") -> FleetTrace:
    reader = csv.reader(lines)
    header = [h.strip() for h in next(reader, [])]
    if not "".join(header):
        raise FleetTraceError(
            [f"{source}:1: empty: expected the header 't,account,amount', then one line per event"]
        )
    if tuple(header) != HEADER:
        raise FleetTraceError(
            [f"{source}:1: the header must be 't,account,amount', not {','.join(header)!r}"]
        )
    events: FleetTrace = {}
    by_raw: dict[str, list[tuple[float, Decimal]]] = {}  # each account's name checked once
    last = 0.0
    for lineno, row in enumerate(reader, start=2):
        if len(row) != len(HEADER):
            if not "".join(row).strip():
                continue
            raise FleetTraceError(
                [
                    f"{source}:{lineno}: expected 3 columns 't,account,amount', got {len(row)}: "
                    f"{','.join(row)!r}"
                ]
            )
        raw_t, raw_account, raw_amount = row
        # The common case in one go (a 1,000-subaccount trace has 200,000 lines); anything odd
        # takes the slow path, which names the line and the column.
        try:
            t = float(raw_t)
            amount = Decimal(raw_amount)
            good = last <= t < math.inf and amount.is_finite() and amount >= 0
        except (ValueError, InvalidOperation):
            good = False
        if not good:
            where = f"{source}:{lineno}"
            t = _time(where, raw_t, last)
            amount = _amount(where, raw_amount)
        into = by_raw.get(raw_account)
        if into is None:
            into = by_raw[raw_account] = events.setdefault(
                _account(f"{source}:{lineno}", raw_account), []
            )
        into.append((t, amount))
        last = t
    if not events:
        raise FleetTraceError([f"{source}: no events"])
    return events


def _account(where: str, raw: str) -> str:
    account = raw.strip()
    if not account or any(c.isspace() for c in account):
        raise FleetTraceError(
            [f"{where}: column 2 'account': must be a subaccount key or 'primary', got {raw!r}"]
        )
    return account


def _time(where: str, raw: str, last: float) -> float:
    try:
        t = float(raw)
    except ValueError:
        raise FleetTraceError([f"{where}: column 1 't': not a number: {raw!r}"]) from None
    if not math.isfinite(t) or t < 0:
        raise FleetTraceError([f"{where}: column 1 't': must be a finite number >= 0, got {raw!r}"])
    if t < last:
        raise FleetTraceError(
            [f"{where}: column 1 't': {raw.strip()} goes back in time (after {last:g})"]
        )
    return t


def _amount(where: str, raw: str) -> Decimal:
    try:
        amount = Decimal(raw.strip())
    except InvalidOperation:
        raise FleetTraceError([f"{where}: column 3 'amount': not a number: {raw!r}"]) from None
    if not amount.is_finite() or amount < 0:
        raise FleetTraceError(
            [f"{where}: column 3 'amount': must be a finite EUR amount >= 0, got {raw!r}"]
        )
    return amount


def format_fleet_trace(trace: Mapping[str, Sequence[tuple[float, Decimal]]]) -> str:
    """The CSV text of ``trace``: all accounts' events merged in time order (ties: by account,
    in the mapping's order), times as given."""
    order = {account: i for i, account in enumerate(trace)}
    rows = sorted(
        (
            (t, order[account], account, amount)
            for account, evs in trace.items()
            for t, amount in evs
        ),
        key=lambda r: (r[0], r[1]),
    )
    lines = [",".join(HEADER)]
    lines += [f"{_t(t)},{account},{amount}" for t, _, account, amount in rows]
    return "\n".join(lines) + "\n"


def _t(t: float) -> str:
    return str(int(t)) if t == int(t) else repr(t)
