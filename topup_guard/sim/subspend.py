"""Demand per subaccount: a spend profile and/or trace events, paid from the right balance.

A subaccount with its own balance pays from it, down to its credit limit (spendable = balance -
credit_limit; credit_limit is zero or negative). A subaccount that shares the primary's balance
pays from the primary's. Whatever a balance cannot pay is refused and counted per subaccount, as
the primary's failed demand is, because refused demand is what fleet mode exists to prevent.

Own-balance demand touches nothing but its own subaccount, so ``SimAccount`` advances it lazily:
only when someone looks at the subaccounts (the list call, a transfer, the state page). Advancing
in one jump or in many small steps gives the same result (the message carry and the trace order
make it exact), so laziness is invisible. A subaccount without demand has no ``SubDemand`` at all.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal
from typing import Protocol

from topup_guard.sim.spend import SpendProfile, messages_in
from topup_guard.sim.subaccounts import SimSubaccount

_NO_SPEND = SpendProfile()


class Purse(Protocol):
    """Where a demand's money comes from."""

    def available(self) -> Decimal: ...

    def pay(self, eur: Decimal) -> None: ...


class OwnPurse:
    """A subaccount's own balance; a suspended subaccount can spend nothing."""

    __slots__ = ("sub",)

    def __init__(self, sub: SimSubaccount) -> None:
        self.sub = sub

    def available(self) -> Decimal:
        sub = self.sub
        if sub.suspended or sub.balance is None:
            return Decimal(0)
        return sub.balance - (sub.credit_limit or Decimal(0))

    def pay(self, eur: Decimal) -> None:
        self.sub.balance = (self.sub.balance or Decimal(0)) - eur


@dataclass(frozen=True, slots=True)
class SubaccountFigures:
    """What one subaccount's demand did, up to the time it was advanced to."""

    spend_rate: Decimal
    served_spend: Decimal
    served_events: int
    refused_spend: Decimal
    refused_events: int
    exhausted_seconds: float


class SubDemand:
    """One subaccount's demand. Times are simulated seconds; ``now`` is how far it has run."""

    __slots__ = (
        "_carry",
        "_exhausted_since",
        "_exhausted_total",
        "_pos",
        "_trace",
        "key",
        "now",
        "price",
        "profile",
        "purse",
        "rate_override",
        "refused_events",
        "refused_spend",
        "served_events",
        "served_spend",
    )

    def __init__(self, key: str, purse: Purse, price: Decimal, start: float) -> None:
        self.key = key
        self.purse = purse
        self.price = price
        self.profile = _NO_SPEND
        self.rate_override: Decimal | None = None
        self._trace: list[tuple[float, Decimal]] = []
        self._pos = 0
        self._carry = 0.0
        self.now = start
        self.served_spend = Decimal(0)
        self.served_events = 0
        self.refused_spend = Decimal(0)
        self.refused_events = 0
        self._exhausted_since: float | None = None
        self._exhausted_total = 0.0

    # --- what it demands ------------------------------------------------------------------
    def add_trace(self, events: Iterable[tuple[float, Decimal]]) -> None:
        """Add events ``(t, eur)``; events before ``now`` are served at once, when next run."""
        rest = self._trace[self._pos :]
        rest += ((float(t), Decimal(eur)) for t, eur in events)
        self._trace = sorted(rest, key=lambda e: e[0])
        self._pos = 0

    @property
    def billing(self) -> bool:
        """True when a rate (the profile or an override) is billed between events."""
        if self.rate_override is not None:
            return self.rate_override > 0
        return not self.profile.idle

    @property
    def active(self) -> bool:
        """False once there is nothing left to demand: then it costs nothing to advance."""
        return self.billing or self._pos < len(self._trace)

    def next_event(self) -> float:
        return self._trace[self._pos][0] if self._pos < len(self._trace) else float("inf")

    def rate_at(self, t: float) -> Decimal:
        return self.rate_override if self.rate_override is not None else self.profile.rate_at(t)

    # --- running it -----------------------------------------------------------------------
    def advance_to(self, t: float) -> None:
        """Run alone up to ``t``: right for an own balance, which nothing else moves meanwhile
        (a transfer brings the subaccount up to its own time first)."""
        if t <= self.now:
            return
        if not self.billing:
            self.serve_due(t)  # events only: each at its own time, no rate in between
            self.now = t
            return
        while True:
            due = min(t, self.next_event())
            self.bill(self.now, due)
            self.now = due
            self.serve_due(due)
            if due >= t:
                return

    def bill(self, t0: float, t1: float) -> None:
        """Bill the rate over ``(t0, t1]`` as whole messages (no trace event in between)."""
        if t1 <= t0 or not self.billing:
            return
        if self.rate_override is not None:
            segments: Iterable[tuple[float, float, Decimal]] = ((t0, t1, self.rate_override),)
        else:
            segments = self.profile.segments(t0, t1)
        price = self.price
        for s, e, rate in segments:
            run, self._carry = messages_in(self._carry, s, e, rate, price)
            n = run.count
            if not n:
                continue
            available = self.purse.available()
            affordable = min(n, int(available // price)) if available > 0 else 0
            if affordable:  # an exhaustion ends at the first message served, wherever cut
                self._take(run.first, price * affordable, affordable)
            if affordable < n:
                self._take(run.time_of(affordable), price * (n - affordable), n - affordable)
        self.now = max(self.now, t1)

    def serve_due(self, t: float) -> bool:
        """Serve the trace events at times <= ``t``; True when there were any."""
        trace, pos, end = self._trace, self._pos, len(self._trace)
        start = pos
        while pos < end and trace[pos][0] <= t:
            when, eur = trace[pos]
            pos += 1
            self._take(when, eur, 1)
        self._pos = pos
        return pos > start

    def _take(self, t: float, eur: Decimal, events: int) -> None:
        """Served whole when the purse covers it, else refused whole."""
        if eur <= self.purse.available():
            self.purse.pay(eur)
            self.served_spend += eur
            self.served_events += events
            self.credited(t)
        else:
            self.refused_spend += eur
            self.refused_events += events
            if self._exhausted_since is None:
                self._exhausted_since = t

    def credited(self, t: float) -> None:
        """Money arrived (or demand was served): an ongoing exhaustion ends at ``t``."""
        if self._exhausted_since is not None:
            self._exhausted_total += max(0.0, t - self._exhausted_since)
            self._exhausted_since = None

    def figures(self, t: float) -> SubaccountFigures:
        ongoing = t - self._exhausted_since if self._exhausted_since is not None else 0.0
        return SubaccountFigures(
            spend_rate=self.rate_at(t),
            served_spend=self.served_spend,
            served_events=self.served_events,
            refused_spend=self.refused_spend,
            refused_events=self.refused_events,
            exhausted_seconds=self._exhausted_total + max(0.0, ongoing),
        )
