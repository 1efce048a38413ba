"""``SimAccount``: one pure, time-driven model of a Vonage prepaid account.

The same object backs the HTTP simulator (advanced lazily to the simulated time of each request)
and the backtest (advanced step by step through a recorded trace). It reads no clock and does no
I/O: every method that changes the account takes the simulated time ``t`` and first advances the
account to it, so the order of events is always the order of their times.

What it models, and why:
- **Demand** from discrete events ``(t, eur)`` (a trace: each served whole or failed whole) and/or
  a scenario ``SpendProfile`` billed message by message. Failed demand and the seconds the account
  spent unable to pay are what a guard exists to drive to zero, so both are counted.
- **Vonage's own auto-reload**: a check every U(check_min_s, check_max_s) seconds (seeded), adding
  the auto-reload amount when the balance is below the threshold. It is deliberately slow; the gap
  it leaves is the guard's reason to exist.
- **Payments can fail** (``fail_payments`` injects failures); three failures in a row switch
  auto-reload off, after which top-ups are refused as "not auto-reload enabled", as on Vonage.
- **Top-up** adds the auto-reload amount ``credit_delay_s`` after it is accepted.
- Secrets, settings and subaccounts live in ``AccountExtras`` (``extras.py``); subaccounts' own
  demand in ``FleetExtras`` (``fleetspend.py``). Shared-balance subaccounts spend the primary's
  money on the primary's timeline (``_advance_with_shared`` below), own-balance ones lazily.
"""

from __future__ import annotations

import hmac
import random
from collections.abc import Iterable, Mapping, Sequence
from decimal import Decimal
from typing import TYPE_CHECKING

from topup_guard.sim.fleetspend import FleetExtras, FleetSpend
from topup_guard.sim.refusals import SimRefusal
from topup_guard.sim.spend import MessageRun, SpendProfile, messages_in

if TYPE_CHECKING:
    from topup_guard.sim.scenario import Scenario

MAX_FAILED_PAYMENTS = 3
DEFAULT_EPOCH = 1_800_000_000.0


class SimAccount(FleetExtras):
    """A simulated prepaid account; money in ``Decimal`` EUR, time in simulated seconds."""

    def __init__(
        self,
        *,
        api_key: str,
        api_secret: str,
        trx: str,
        balance: Decimal,
        topup_amount: Decimal,
        autoreload_threshold: Decimal,
        auto_reload: bool = True,
        check_min_s: float = 300.0,
        check_max_s: float = 600.0,
        seed: int = 0,
        trace: Iterable[tuple[float, Decimal]] = (),
        spend: SpendProfile | None = None,
        message_price: Decimal = Decimal("0.0075"),
        credit_delay_s: float = 0.0,
        start: float = 0.0,
        epoch: float = DEFAULT_EPOCH,
    ) -> None:
        if not 0 < check_min_s <= check_max_s:
            raise ValueError("need 0 < check_min_s <= check_max_s")
        if message_price <= 0:
            raise ValueError("message_price must be positive")
        super().__init__(api_key=api_key, api_secret=api_secret, seed=seed, epoch=epoch)
        self._trx = trx
        self._balance = Decimal(balance)
        self.topup_amount = Decimal(topup_amount)
        self.autoreload_threshold = Decimal(autoreload_threshold)
        self.auto_reload = auto_reload
        self.check_min_s = check_min_s
        self.check_max_s = check_max_s
        self.spend = spend or SpendProfile()
        self.spend_rate_override: Decimal | None = None
        self.message_price = Decimal(message_price)
        self.credit_delay_s = credit_delay_s
        self.fail_payments = 0
        self._consecutive_failures = 0
        self._rng = random.Random(seed)  # noqa: S311 - a repeatable simulation, not crypto
        self._now = start
        self._next_check = start + self._check_interval()
        self._trace = sorted(((float(t), Decimal(eur)) for t, eur in trace), key=lambda e: e[0])
        self._trace_pos = 0
        self._pending: list[tuple[float, Decimal]] = []
        self._carry = 0.0
        self._exhausted_since: float | None = None
        self._exhausted_total = 0.0
        # Counters, read by the simulator's /_sim/state and by the backtest.
        self.autoreloads: list[tuple[float, Decimal]] = []
        self.topups: list[tuple[float, Decimal]] = []
        self.payments_failed = 0
        self.debits: list[tuple[float, Decimal]] = []
        self.served_spend = Decimal(0)
        self.served_events = 0
        self.failed_spend = Decimal(0)
        self.failed_events = 0
        # Subaccounts' demand: only those that demand anything cost anything.
        self._fleet = FleetSpend(_PrimaryPurse(self), self.message_price)

    @classmethod
    def from_scenario(
        cls,
        scenario: Scenario,
        *,
        api_key: str,
        api_secret: str,
        trx: str,
        trace: Iterable[tuple[float, Decimal]] = (),
        start: float = 0.0,
        epoch: float = DEFAULT_EPOCH,
        fleet_trace: Mapping[str, Sequence[tuple[float, Decimal]]] | None = None,
    ) -> SimAccount:
        """The account a scenario describes; ``topup_latency_s`` becomes the credit delay.

        ``fleet_trace`` (``read_fleet_trace``'s result) adds trace demand per account: the
        ``primary`` entry to the primary's, every other one to that scenario subaccount's (a key
        the scenario does not name is a ValueError).
        """
        primary = [*trace, *(fleet_trace or {}).get("primary", ())]
        account = cls(
            api_key=api_key,
            api_secret=api_secret,
            trx=trx,
            balance=scenario.initial_balance,
            topup_amount=scenario.topup_amount,
            autoreload_threshold=scenario.autoreload_threshold,
            auto_reload=scenario.auto_reload,
            check_min_s=scenario.autoreload_check_min_s,
            check_max_s=scenario.autoreload_check_max_s,
            seed=scenario.seed,
            trace=primary,
            spend=scenario.spend_profile(),
            message_price=scenario.message_price,
            credit_delay_s=scenario.topup_latency_s,
            start=start,
            epoch=epoch,
        )
        account.add_scenario_subaccounts(scenario, fleet_trace or {}, start)
        return account

    def __repr__(self) -> str:  # no secret, no trx
        return f"SimAccount(api_key={self.api_key!r}, balance={self._balance}, t={self._now})"

    # --- reading --------------------------------------------------------------------------
    @property
    def now(self) -> float:
        """The simulated time the account has been advanced to."""
        return self._now

    @property
    def balance(self) -> Decimal:
        return self._balance

    @property
    def exhausted_seconds(self) -> float:
        """Seconds during which demand failed for want of balance, up to ``now``."""
        ongoing = self._now - self._exhausted_since if self._exhausted_since is not None else 0.0
        return self._exhausted_total + ongoing

    @property
    def next_check(self) -> float:
        """When Vonage's auto-reload will next look at the balance."""
        return self._next_check

    # --- time -----------------------------------------------------------------------------
    def advance_to(self, t: float) -> None:
        """Consume demand and run auto-reload checks and pending credits up to time ``t``."""
        if self._fleet.shared:
            self._advance_with_shared(t)
            return
        while True:
            credit_at = self._next_credit_time()
            if self.spend_rate_override is None and self.spend.idle:
                # Only trace events between here and the next check or credit: serve them in one
                # tight loop (a 6-hour trace is 21,600 of them). Same order as the general path.
                self._drain_trace(min(t, self._next_check), credit_at)
            due = min(t, self._next_check, self._next_trace_time(), credit_at)
            if due > self._now:
                self._consume_scenario(self._now, due)
                self._now = due
            if not self._fire_due() and due >= t:
                return

    def _advance_with_shared(self, t: float) -> None:
        """``advance_to`` while subaccounts spend the primary's balance: their demand joins the
        primary's timeline, so auto-reload checks and credits see it in time order. At one
        instant the primary's own events come first, then the subaccounts'. A separate loop, so
        the common case (no such subaccount) runs exactly the code it always ran."""
        shared = self._fleet.shared
        while True:
            credit_at = self._next_credit_time()
            subs_at = min(d.next_event() for d in shared)
            due = min(t, self._next_check, self._next_trace_time(), credit_at, subs_at)
            if due > self._now:
                self._consume_scenario(self._now, due)
                for demand in shared:
                    demand.bill(self._now, due)
                self._now = due
            fired = self._fire_due()
            for demand in shared:
                fired = demand.serve_due(self._now) or fired
            if not fired and due >= t:
                return

    def _drain_trace(self, limit: float, credit_at: float) -> None:
        """Serve trace events at times <= ``limit`` and < ``credit_at`` (a credit due at the
        same instant as an event lands first, as in ``_fire_due``). Only valid without scenario
        spend, which would otherwise have to be billed between the events."""
        trace, pos, end = self._trace, self._trace_pos, len(self._trace)
        last = self._now
        while pos < end:
            when, eur = trace[pos]
            if when > limit or when >= credit_at:
                break
            pos += 1
            last = when
            if eur <= self._balance and self._exhausted_since is None:
                # _demand's common case, inlined: served, and no exhaustion to close.
                self._balance -= eur
                self.served_spend += eur
                self.served_events += 1
            else:
                self._demand(when, eur, 1)
        self._trace_pos = pos
        self._now = max(self._now, last)

    def _next_trace_time(self) -> float:
        if self._trace_pos < len(self._trace):
            return self._trace[self._trace_pos][0]
        return float("inf")

    def _next_credit_time(self) -> float:
        if not self._pending:
            return float("inf")
        return min(when for when, _ in self._pending)

    def _fire_due(self) -> bool:
        """Apply everything due at or before ``now``: credits, then trace spend, then a check."""
        fired = False
        if self._pending:
            for item in sorted(p for p in self._pending if p[0] <= self._now):
                self._pending.remove(item)
                self._credit(item[1])
                fired = True
        while self._trace_pos < len(self._trace) and self._trace[self._trace_pos][0] <= self._now:
            t, eur = self._trace[self._trace_pos]
            self._trace_pos += 1
            self._demand(t, eur, 1)
            fired = True
        if self._next_check <= self._now:
            self._autoreload_check()
            self._next_check += self._check_interval()
            fired = True
        return fired

    def _consume_scenario(self, t0: float, t1: float) -> None:
        if self.spend_rate_override is None and self.spend.idle:
            return  # nothing to bill; the carry stays as it is (a zero rate leaves it too)
        if self.spend_rate_override is not None:
            segments: Iterable[tuple[float, float, Decimal]] = [(t0, t1, self.spend_rate_override)]
        else:
            segments = self.spend.segments(t0, t1)
        for s, e, rate in segments:
            run, self._carry = messages_in(self._carry, s, e, rate, self.message_price)
            if run.count:
                self._demand_messages(run)

    def _demand_messages(self, run: MessageRun) -> None:
        """Serve equal-priced messages in order until the balance cannot pay the next one."""
        price, n = self.message_price, run.count
        affordable = min(n, int(self._balance // price)) if self._balance > 0 else 0
        if affordable:
            self._demand(run.time_of(affordable - 1), price * affordable, affordable)
        if affordable < n:
            self._demand(run.time_of(affordable), price * (n - affordable), n - affordable)

    def _demand(self, t: float, eur: Decimal, events: int) -> None:
        """Spend ``eur`` (``events`` items) at ``t``: served whole if the balance covers it."""
        if eur <= self._balance:
            self._balance -= eur
            self.served_spend += eur
            self.served_events += events
            self._end_exhaustion(t)
        else:
            self.failed_spend += eur
            self.failed_events += events
            if self._exhausted_since is None:
                self._exhausted_since = t

    def _credit(self, amount: Decimal) -> None:
        self._balance += amount
        self._end_exhaustion(self._now)
        if self._fleet.shared:
            self._fleet.credited_primary(self._now)

    def _end_exhaustion(self, t: float) -> None:
        if self._exhausted_since is not None:
            self._exhausted_total += max(0.0, t - self._exhausted_since)
            self._exhausted_since = None

    def _check_interval(self) -> float:
        return self._rng.uniform(self.check_min_s, self.check_max_s)

    # --- payments -------------------------------------------------------------------------
    def _autoreload_check(self) -> None:
        if self.auto_reload and self._balance < self.autoreload_threshold and self._pay():
            self.autoreloads.append((self._now, self.topup_amount))
            self._credit(self.topup_amount)

    def _pay(self) -> bool:
        """Charge the stored payment method; three failures in a row disable auto-reload."""
        if self.fail_payments > 0:
            self.fail_payments -= 1
            self.payments_failed += 1
            self._consecutive_failures += 1
            if self._consecutive_failures >= MAX_FAILED_PAYMENTS:
                self.auto_reload = False
            return False
        self._consecutive_failures = 0
        return True

    def top_up(self, trx: str, t: float) -> Decimal:
        """``POST /account/top-up``: charge the auto-reload amount now, credit it after the delay.

        Raises ``SimRefusal`` "not-auto-reload-enabled" for a wrong trx or auto-reload off, and
        "topup-failed" when the payment fails (nothing is credited either way).
        """
        self.advance_to(t)
        if not hmac.compare_digest(trx.encode(), self._trx.encode()) or not self.auto_reload:
            raise SimRefusal("not-auto-reload-enabled")
        if not self._pay():
            raise SimRefusal("topup-failed")
        self.topups.append((self._now, self.topup_amount))
        self._pending.append((self._now + self.credit_delay_s, self.topup_amount))
        self._fire_due()  # a zero delay credits at once
        return self.topup_amount

    # --- operator controls (the simulator's /_sim/control, the backtest's set-up) ----------
    def set_balance(self, value: Decimal, t: float) -> None:
        self.advance_to(t)
        if value > self._balance:
            self._end_exhaustion(self._now)
        self._balance = Decimal(value)

    def set_auto_reload(self, enabled: bool, t: float) -> None:
        """Switch auto-reload; switching it on also forgets earlier payment failures."""
        self.advance_to(t)
        self.auto_reload = enabled
        if enabled:
            self._consecutive_failures = 0

    def set_spend_rate(self, rate: Decimal | None, t: float) -> None:
        """Replace the scenario's rate by a constant EUR/s from ``t`` on; None restores it."""
        self.advance_to(t)
        self.spend_rate_override = None if rate is None else Decimal(rate)

    def one_off_debit(self, amount: Decimal, t: float) -> None:
        """A single charge that is not message traffic (a monthly number rental, a manual
        transfer to a subaccount): taken whole, as far as the balance goes."""
        self.advance_to(t)
        self.debits.append((self._now, Decimal(amount)))
        self._balance -= min(Decimal(amount), max(self._balance, Decimal(0)))

    # --- balance movements from the subaccount API ----------------------------------------
    def _debit_primary(self, amount: Decimal) -> None:
        self._balance -= amount

    def _credit_primary(self, amount: Decimal) -> None:
        self._credit(amount)

    # --- the SMS API (POST /sms/json) ------------------------------------------------------
    def send_sms(self, t: float, parts: int) -> tuple[bool, Decimal, Decimal]:
        """One message of ``parts`` parts at ``t``: (accepted, price per part, balance after).

        Paid whole or refused whole (Vonage's status 9), like a trace event: a refusal costs
        nothing and is counted as failed demand.
        """
        if parts < 1:
            raise ValueError("parts must be at least 1")
        self.advance_to(t)
        cost = self.message_price * parts
        accepted = cost <= self._balance
        self._demand(self._now, cost, parts)
        return accepted, self.message_price, self._balance


class _PrimaryPurse:
    """The primary's balance, as a purse for subaccounts that share it (no credit limit)."""

    __slots__ = ("_account",)

    def __init__(self, account: SimAccount) -> None:
        self._account = account

    def available(self) -> Decimal:
        return self._account._balance

    def pay(self, eur: Decimal) -> None:
        self._account._balance -= eur
