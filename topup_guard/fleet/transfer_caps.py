"""Caps on transfers, per subaccount and fleet-wide, computed from the transfer ledger's entries.

Pure functions of (entries, caps, amount, now): the ledger is the memory, so a restart cannot
reset a cap. Like ``limits.py``: an entry counts while the money may have moved (PENDING,
UNKNOWN, SUCCEEDED, UNCONFIRMED), at the largest amount known for it; FAILED and DRY_RUN never
count. Windows are rolling: an entry created at ``t`` counts while ``now - window < t`` (so it
stops counting at exactly ``t + window``); an entry "in the future" (the wall clock went back)
counts too — conservative.

Four caps: transfers per hour and EUR per rolling 24 h for each subaccount (``AccountRules``)
and for the whole fleet (``FleetRules``): both have ``max_transfers_per_hour`` and
``max_daily_amount``, which is all this module reads.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Protocol

from topup_guard.fleet.transfer_base import TransferEntry

HOUR = 3600.0
DAY = 86400.0


class CapRules(Protocol):
    """``AccountRules`` and ``FleetRules`` (fleet/rules.py) both satisfy it."""

    @property
    def max_transfers_per_hour(self) -> int: ...

    @property
    def max_daily_amount(self) -> Decimal: ...


@dataclass(frozen=True, slots=True)
class Caps:
    """A plain ``CapRules`` (tests, callers without a fleet file)."""

    max_transfers_per_hour: int
    max_daily_amount: Decimal


@dataclass(frozen=True, slots=True)
class Allowance:
    """How many transfers of ``amount`` may be made now, and if none, why and until when.

    ``limited_by`` names the binding caps ("account_hourly", "account_daily_amount",
    "fleet_hourly", "fleet_daily_amount"), empty when ``transfers`` > 0. ``clears_at`` is the
    wall time at which one more transfer of ``amount`` becomes allowed if nothing else is sent
    (None when one is allowed now, or never: the amount alone exceeds a daily cap).
    """

    transfers: int
    limited_by: tuple[str, ...]
    clears_at: float | None

    @property
    def allowed(self) -> bool:
        return self.transfers > 0


@dataclass(frozen=True, slots=True)
class _Window:
    """One cap's verdict: how many more fit, and when the next one fits (None: now / never)."""

    name: str
    left: int
    clears_at: float | None
    never: bool = False


def counted(entries: Iterable[TransferEntry]) -> list[TransferEntry]:
    """The entries that count against the caps, oldest first."""
    return sorted((e for e in entries if e.state.counts), key=lambda e: e.created_wall)


def _count_cap(name: str, times: Sequence[float], cap: int, now: float, window: float) -> _Window:
    inside = [t for t in times if t + window > now]  # the same sum as clears_at: exact
    left = cap - len(inside)
    if left > 0:
        return _Window(name, left, None)
    if cap <= 0:
        return _Window(name, 0, None, never=True)
    # One more fits once len(inside) - cap + 1 of the oldest have aged out.
    return _Window(name, 0, inside[len(inside) - cap] + window)


def _amount_cap(
    name: str,
    items: Sequence[tuple[float, Decimal]],
    cap: Decimal,
    amount: Decimal,
    now: float,
    window: float,
) -> _Window:
    inside = [(t, a) for t, a in items if t + window > now]
    used = sum((a for _, a in inside), Decimal(0))
    if amount <= 0:
        return _Window(name, 1 << 30, None)
    left = int((cap - used) // amount) if cap > used else 0
    if left > 0:
        return _Window(name, left, None)
    if amount > cap:
        return _Window(name, 0, None, never=True)
    for t, a in inside:  # oldest first: they leave the window in this order
        used -= a
        if used + amount <= cap:
            return _Window(name, 0, t + window)
    raise AssertionError("unreachable: with every entry gone, amount <= cap fits")


def _windows(
    entries: Sequence[TransferEntry], rules: CapRules, amount: Decimal, now: float, prefix: str
) -> list[_Window]:
    times = [e.created_wall for e in entries]
    items = [(e.created_wall, e.amount_for_caps) for e in entries]
    return [
        _count_cap(f"{prefix}_hourly", times, rules.max_transfers_per_hour, now, HOUR),
        _amount_cap(f"{prefix}_daily_amount", items, rules.max_daily_amount, amount, now, DAY),
    ]


def _verdict(windows: Sequence[_Window]) -> Allowance:
    left = min(w.left for w in windows)
    if left > 0:
        return Allowance(left, (), None)
    binding = [w for w in windows if w.left <= 0]
    names = tuple(w.name for w in binding)
    if any(w.never for w in binding):
        return Allowance(0, names, None)
    # Caps clear independently and stay clear while nothing is sent: the last one decides.
    return Allowance(0, names, max(w.clears_at or 0.0 for w in binding))


def account_allowance(
    entries: Iterable[TransferEntry], account: str, amount: Decimal, now_wall: float,
    rules: CapRules,
) -> Allowance:  # fmt: skip
    """The subaccount's own caps only."""
    mine = counted(e for e in entries if e.account == account)
    return _verdict(_windows(mine, rules, amount, now_wall, "account"))


def fleet_allowance(
    entries: Iterable[TransferEntry], amount: Decimal, now_wall: float, rules: CapRules
) -> Allowance:
    """The fleet-wide caps only (every subaccount's transfers together)."""
    return _verdict(_windows(counted(entries), rules, amount, now_wall, "fleet"))


def allowance(
    entries: Iterable[TransferEntry],
    account: str,
    amount: Decimal,
    now_wall: float,
    *,
    account_rules: CapRules,
    fleet_rules: CapRules,
) -> Allowance:
    """Both: how many transfers of ``amount`` ``account`` may still get now, and when the caps
    clear. ``entries``: at least the last 24 h of the whole fleet (``ledger.since(now - DAY)``)."""
    everything = counted(entries)
    mine = [e for e in everything if e.account == account]
    windows = _windows(mine, account_rules, amount, now_wall, "account")
    windows += _windows(everything, fleet_rules, amount, now_wall, "fleet")
    return _verdict(windows)


class CapsView:
    """The caps of a whole fleet for one cycle: built once from the ledger's last day, asked per
    subaccount in time proportional to *its* entries (the fleet-wide sums are kept, not
    recomputed: 1,000 subaccounts ask in a millisecond or two), and told of every transfer begun
    in the cycle so the next subaccount's answer counts it. Same answers as ``allowance``."""

    def __init__(
        self, entries: Iterable[TransferEntry], now_wall: float, fleet_rules: CapRules
    ) -> None:
        self._now = now_wall
        self._fleet_rules = fleet_rules
        self._fleet: list[TransferEntry] = []
        self._by_account: dict[str, list[TransferEntry]] = {}
        self._fleet_hour = 0
        self._fleet_day = Decimal(0)
        for e in counted(entries):
            if e.created_wall + DAY > now_wall:  # older ones count in no window
                self._add(e)

    def _add(self, e: TransferEntry) -> None:
        self._fleet.append(e)
        self._by_account.setdefault(e.account, []).append(e)
        if e.created_wall + HOUR > self._now:
            self._fleet_hour += 1
        self._fleet_day += e.amount_for_caps

    def record(self, entry: TransferEntry) -> None:
        """Count a transfer begun after the view was built (if its state counts)."""
        if entry.state.counts:
            self._add(entry)

    def allowance(self, account: str, amount: Decimal, rules: CapRules) -> Allowance:
        mine = self._by_account.get(account, [])
        windows = _windows(sorted(mine, key=lambda e: e.created_wall), rules, amount,
                           self._now, "account")  # fmt: skip
        fleet = self._fleet_rules
        hour_left = fleet.max_transfers_per_hour - self._fleet_hour
        day_left = fleet.max_daily_amount - self._fleet_day
        fits = amount > 0 and day_left >= amount
        if hour_left > 0 and fits:
            by_amount = int(day_left // amount)
            windows.append(_Window("fleet_hourly", hour_left, None))
            windows.append(_Window("fleet_daily_amount", by_amount, None))
        else:  # a fleet cap binds (rare): the full computation says until when
            ordered = sorted(self._fleet, key=lambda e: e.created_wall)
            windows += _windows(ordered, fleet, amount, self._now, "fleet")
        return _verdict(windows)
