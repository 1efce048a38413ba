"""The fleet loop: one list call reads every balance; each account decides; money moves.

A cycle, in order:
1. settle transfers in doubt (``SafeTransfer.settle_open``: the listing answers "did it happen");
2. ``GET /accounts/{key}/subaccounts`` — the one read of the cycle, every balance at once;
3. each own-balance subaccount is observed and decided on (``fleet/account.py``, the pure policy);
   shared-balance ones are reported and skipped, excluded ones listed, suspended ones raise a
   condition;
4. the primary steps like a single account (``Engine.step``: all of its top-up safety), its floor
   raised by ``reserve`` — the transfers wanted now plus what the fleet could spend within the
   primary's own blind time — so the primary is topped up *for* the fleet, before it is short;
5. subaccounts are funded by transfer, soonest-empty first, within the caps (per account and
   fleet-wide) and within what the primary can give above its floor. What it cannot cover is
   ranked by time to empty and announced (``FLEET_SHORTFALL``: who runs dry when).
The next cycle comes when the most urgent account wants its next reading.

Money moved out of the primary by an applied transfer is told to the primary's engine
(``note_debit``) so it is neither spend to extrapolate nor a step that hides a credit. A transfer
in doubt is not told (if it did not happen, a phantom rise would follow); the listing settles it
within seconds, and a drop the primary sees meanwhile is judged like any other.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Mapping
from decimal import ROUND_FLOOR, Decimal
from typing import Any

from opentelemetry import trace

from topup_guard import retry
from topup_guard.clock import Clock
from topup_guard.coordination import Coordinator, SoleGuard
from topup_guard.engine import Engine
from topup_guard.errors import LedgerError, VonageError
from topup_guard.events import (
    Condition,
    ConditionsChanged,
    Event,
    EventSink,
    FleetCycle,
    Started,
    Stopped,
    TransferFinished,
)
from topup_guard.fleet.account import SubaccountGuard
from topup_guard.fleet.api import FleetAPI
from topup_guard.fleet.rules import FleetRules
from topup_guard.fleet.transfer import SafeTransfer
from topup_guard.fleet.transfer_base import TransferEntry, TransferLedger, TransferState
from topup_guard.fleet.transfer_caps import DAY, CapsView
from topup_guard.funding import FundOutcome, FundRequest
from topup_guard.model import Balance, Subaccount, SubaccountsOverview
from topup_guard.policy.decide import PolicyParams

log = logging.getLogger("topup_guard.fleet")

# Accounts a shortfall message names; the rest are counted.
NAMED_IN_SHORTFALL = 8
# While a transfer is in doubt, the next cycle (and its listing) comes this soon.
DOUBT_POLL_S = 5.0
_DECIDE_CAP = 50  # transfers one account may be decided at most (policy bound, not a cap)


class _PrimarySink:
    """The primary engine's events pass through, except its conditions: the fleet merges them
    with its own into one snapshot, so the notifier sees one consistent set."""

    def __init__(self, sink: EventSink) -> None:
        self._sink = sink
        self.conditions: ConditionsChanged | None = None

    def emit(self, event: Event) -> None:
        if isinstance(event, ConditionsChanged):
            self.conditions = event
            return
        if isinstance(event, Started | Stopped):
            return  # the fleet announces its own start and stop
        self._sink.emit(event)


class FleetGuard:
    def __init__(
        self,
        *,
        api: FleetAPI,
        primary: Engine,
        primary_sink: _PrimarySink,
        transfers: SafeTransfer,
        ledger: TransferLedger,
        rules: FleetRules,
        clock: Clock,
        sink: EventSink,
        params: PolicyParams,
        windows: tuple[float, float],
        policy: Mapping[str, str] | None = None,
        owns_ledger: bool = True,
        dry_run: bool = False,
        coordinator: Coordinator | None = None,
        tracer: trace.Tracer | None = None,
    ) -> None:
        self._api = api
        self.primary = primary
        self._primary_sink = primary_sink
        self._transfers = transfers
        self._ledger = ledger
        self.rules = rules
        self._clock = clock
        self._sink = sink
        self._params = params
        self._windows = windows
        self._policy = dict(policy or {})
        self._owns_ledger = owns_ledger  # False: it shares the top-up ledger's Redis client
        self._dry_run = dry_run
        self._coord = coordinator or SoleGuard()
        self._tracer = tracer or trace.get_tracer("topup_guard")
        self.accounts: dict[str, SubaccountGuard] = {}
        self.skipped: dict[str, str] = {}  # key -> why (shared balance, excluded)
        self.list_calls = 0
        # (key, seconds to empty) of accounts the primary could not fund, soonest first
        self.shortfall: list[tuple[str, float]] = []
        self._stop: asyncio.Event | None = None
        self._in_doubt: set[str] = set()

    @staticmethod
    def primary_sink(sink: EventSink) -> _PrimarySink:
        """The sink the primary's engine must be built with (see ``_PrimarySink``)."""
        return _PrimarySink(sink)

    # --- the loop ----------------------------------------------------------------------------
    async def run(self, stop: asyncio.Event, *, until: float | None = None) -> None:
        self._stop = stop
        self.primary.status.started_at = self._clock.now()
        self.primary.status.fleet = self.view
        policy = {**self._policy, "fleet_file": self.rules.source,
                  "fleet_rules": self.rules.fingerprint()}  # fmt: skip
        self._sink.emit(Started(policy=policy, dry_run=self._dry_run,
                                coordination=type(self._coord).__name__))  # fmt: skip
        next_at = self._clock.now()
        reason = "stop requested"
        while not stop.is_set():
            if until is not None and self._clock.now() >= until:
                reason = "end of run"
                break
            next_in = await self.cycle()
            self.primary.status.heartbeat = self._clock.now()
            next_at = max(next_at + next_in, self._clock.now())
            if until is not None:
                next_at = min(next_at, max(until, self._clock.now()))
            await self._clock.sleep(next_at - self._clock.now(), wake=stop)
        self._sink.emit(Stopped(reason=reason))

    async def cycle(self) -> float:
        """One fleet cycle; returns seconds until the next."""
        with self._tracer.start_as_current_span("fleet_cycle") as span:
            started = self._clock.now()
            try:
                await self._settle()
            except LedgerError as exc:
                log.error("transfer_ledger_unavailable", extra={"error": str(exc)})
            try:
                overview = await self._read()
            except VonageError as exc:
                return self.primary.read_failed(exc)
            now = self._clock.now()
            active = self._observe(overview, now)
            span.set_attribute("fleet.accounts", len(active))
            try:
                in_flight = {e.account for e in await self._ledger.unresolved()}
            except LedgerError as exc:
                log.error("transfer_ledger_unavailable", extra={"error": str(exc)})
                in_flight = set(self.accounts)  # nothing can be checked: nobody is funded
            may_spend = self._coord.may_spend()
            for sub in active:
                sub.decide(now, allowed=_DECIDE_CAP, in_flight=sub.key in in_flight,
                           may_spend=may_spend, dry_run=self._dry_run)  # fmt: skip
            needs = sorted(
                (n for n in (s.need(now) for s in active) if n.amount > 0),
                key=lambda n: n.seconds_to_empty,
            )
            # A suspended account is never funded (``_fund``): its wants are no reserve either.
            # What leaves the primary now (this cycle's transfers) on top of its floor, and the
            # fleet's flow spent from it like its own (projection and headroom).
            now_out = sum((n.amount for n in needs if not self.accounts[n.key].suspended),
                          Decimal(0))  # fmt: skip
            self.primary.reserve = now_out
            self.primary.draw = self._draw(active)
            primary_next = await self.primary.step(
                Balance(value=overview.primary.balance or Decimal(0), auto_reload=None),
                read_took=now - started,
            )
            funded = await self._fund(needs, overview.primary, now)
            self._conditions(active, overview)
            self._sink.emit(
                FleetCycle(
                    wall=self._clock.wall(),
                    balances={
                        overview.primary.api_key: overview.primary.balance or Decimal(0),
                        **{s.key: s.spendable for s in active if s.spendable is not None},
                    },
                    transfers=funded,
                    list_calls=self.list_calls,
                    duration_s=self._clock.now() - started,
                )
            )
            waits = [primary_next, self._params.poll_interval]
            waits += [w for s in active if (w := s.next_reading_in()) is not None]
            if self._in_doubt:
                waits.append(DOUBT_POLL_S)
            return max(self._params.poll_min, min(waits))

    # --- steps -------------------------------------------------------------------------------
    async def _read(self) -> SubaccountsOverview:
        async def sleep(seconds: float) -> None:
            await self._clock.sleep(seconds, wake=self._stop)

        self.list_calls += 1
        return await retry.call(
            self._api.list_subaccounts,
            name="subaccounts",
            retryable=retry.read_is_retryable,
            policy=retry.READ_POLICY,
            sleep=sleep,
        )

    async def _settle(self) -> None:
        """Transfers in doubt, settled by the listing; the applied ones are told to both ends."""
        if not self._in_doubt and not await self._ledger.in_doubt():
            return
        for entry in await self._transfers.settle_open():
            self._finished(entry, settled_late=True)
        self._in_doubt = {e.account for e in await self._ledger.in_doubt()}

    def _observe(self, overview: SubaccountsOverview, now: float) -> list[SubaccountGuard]:
        seen: set[str] = set()
        active: list[SubaccountGuard] = []
        for sub in overview.subaccounts:
            seen.add(sub.api_key)
            why = self._skip_reason(sub)
            if why:
                self.skipped[sub.api_key] = why
                self.accounts.pop(sub.api_key, None)
                continue
            self.skipped.pop(sub.api_key, None)
            guard = self.accounts.get(sub.api_key)
            if guard is None:
                rules = self.rules.for_account(sub.api_key, sub.name)
                guard = SubaccountGuard(sub, rules, self._params, self._windows)
                self.accounts[sub.api_key] = guard
            guard.observe(sub, now)
            active.append(guard)
        for gone in [k for k in self.accounts if k not in seen]:
            del self.accounts[gone]  # deleted at Vonage: nothing left to fund
        for gone in [k for k in self.skipped if k not in seen]:
            del self.skipped[gone]
        return active

    def _skip_reason(self, sub: Subaccount) -> str:
        if sub.use_primary_account_balance or sub.balance is None:
            return "shares the primary account's balance"
        if self.rules.for_account(sub.api_key, sub.name).excluded:
            return "excluded by the fleet file"
        return ""

    def _draw(self, active: list[SubaccountGuard]) -> tuple[float, float]:
        """(sustained, burst) EUR/s the fleet draws from the primary: the sum of the accounts'
        rates, and at a burst that sum plus the largest single excess over its own rate —
        independent accounts do not all burst at once, so the sum of every peak would buy the
        primary money that sits idle."""
        flows = [s.flow() for s in active if not s.suspended]
        sustained = sum(rate for rate, _ in flows)
        burst = max((peak - rate for rate, peak in flows), default=0.0)
        return sustained, sustained + burst

    async def _fund(self, needs: list[Any], primary: Subaccount, now: float) -> int:
        """Transfer to the accounts in need, soonest-empty first; returns transfers made."""
        self.shortfall = []
        if not needs:
            return 0
        floor = self.primary.params.min_balance
        credit = min(primary.credit_limit or Decimal(0), Decimal(0))
        available = (primary.balance or Decimal(0)) - credit - floor
        try:
            history = await self._ledger.since(self._clock.wall() - DAY)
        except LedgerError as exc:
            log.error("transfer_ledger_unavailable", extra={"error": str(exc)})
            return 0
        caps_view = CapsView(history, self._clock.wall(), self.rules)
        made = 0
        for need in needs:
            if self._stop is not None and self._stop.is_set():
                break
            sub = self.accounts[need.key]
            if sub.suspended:  # a suspended account cannot send; money would only sit there
                sub.last_action = "not funded: suspended at Vonage"
                continue
            amount = sub.rules.transfer_amount
            caps = caps_view.allowance(sub.key, amount, sub.rules)
            if caps.transfers <= 0:
                sub.last_action = f"transfer wanted but capped ({', '.join(caps.limited_by)})"
                continue
            count = min(int(need.amount / amount), caps.transfers)
            want = amount * max(count, 1)
            give = min(want, available.quantize(Decimal("1"), rounding=ROUND_FLOOR))
            if give < min(amount, want):
                self.shortfall.append((sub.key, need.seconds_to_empty))
                continue
            request = FundRequest(sub.key, give, need.reason, sub.spendable or Decimal(0))
            result = await self._transfers.fund(request, stop=self._stop)
            made += 1
            if result.outcome is FundOutcome.NOT_STARTED:
                sub.last_action = f"transfer not started: {result.detail}"
                continue
            if result.outcome is not FundOutcome.DRY_RUN:
                available -= give  # applied or in doubt: the primary's money may have left
            if result.outcome is FundOutcome.AMBIGUOUS:
                self.primary.expect_debit(give)  # the next reading may show it
            if result.entry is not None:
                caps_view.record(result.entry)
                self._finished(result.entry, settled_late=False, action=result.action)
        self.shortfall.sort(key=lambda x: x[1])
        return made

    def _finished(
        self, entry: TransferEntry, *, settled_late: bool, action: str | None = None
    ) -> None:
        """Tell both ends what a transfer's outcome proves, and announce it."""
        sub = self.accounts.get(entry.account)
        amount = entry.applied_amount or entry.amount
        if settled_late:
            self.primary.forget_debit(entry.amount)  # the doubt is over, either way
        if entry.state is TransferState.SUCCEEDED:
            if sub is not None:
                sub.note_credit(amount)
            # Made in this cycle: after the primary's reading, by construction. Settled late:
            # when it began (from wall time; a reading since then has shown it already).
            at = self._clock.now()
            if settled_late:
                at -= max(0.0, self._clock.wall() - entry.created_wall)
            self.primary.note_debit(amount, at)
        if entry.state in (TransferState.UNKNOWN, TransferState.PENDING):
            self._in_doubt.add(entry.account)
        if sub is not None:
            sub.last_action = f"transfer #{entry.transfer_id} of {amount:.2f} EUR: {entry.state}"
        self._sink.emit(
            TransferFinished(
                wall=self._clock.wall(),
                account=entry.account,
                name=sub.name if sub is not None else None,
                transfer_id=entry.transfer_id,
                state=entry.state.value,
                amount=amount,
                reference=entry.reference,
                detail=entry.detail,
                settled_late=settled_late,
                action=action,
            )
        )

    def _conditions(self, active: list[SubaccountGuard], overview: SubaccountsOverview) -> None:
        """The fleet's conditions merged with the primary's, as one snapshot."""
        fleet: dict[Condition, str] = {}
        low = [s for s in active if s.spendable is not None and s.spendable < s.rules.floor]
        if low:
            low.sort(key=lambda s: s.spendable or Decimal(0))
            fleet[Condition.SUBACCOUNT_LOW] = _listing(
                "below their floor",
                [f"{s.label()} {s.spendable:.2f} EUR" for s in low],
            )
        suspended = [s.label() for s in active if s.suspended]
        if suspended:
            fleet[Condition.SUBACCOUNT_SUSPENDED] = _listing("suspended at Vonage", suspended)
        if self.shortfall:
            have = overview.primary.balance or Decimal(0)
            above = have - self.primary.params.min_balance
            fleet[Condition.FLEET_SHORTFALL] = (
                f"the primary has {have:.2f} EUR, {max(above, Decimal(0)):.2f} above its floor: "
                + _listing(
                    "run dry first",
                    [f"{self._label(key)} in {_secs(t)}" for key, t in self.shortfall],
                )
            )
        doubt = sorted(self._in_doubt)
        if doubt:
            fleet[Condition.TRANSFER_IN_DOUBT] = _listing(
                "have a transfer the listing has not settled yet", doubt
            )
        primary = self._primary_sink.conditions
        merged: dict[Condition, str] = dict(primary.active) if primary else {}
        merged.update(fleet)
        if self.primary.status.may_spend or not self._coord.healthy:
            self._sink.emit(
                ConditionsChanged(
                    wall=self._clock.wall(),
                    active=merged,
                    clears_at=dict(primary.clears_at) if primary else {},
                )
            )
        self.primary.status.active_conditions = {c.value: d for c, d in merged.items()}

    def _label(self, key: str) -> str:
        sub = self.accounts.get(key)
        return sub.label() if sub is not None else key

    def _name(self, key: str) -> str | None:
        sub = self.accounts.get(key)
        return sub.name if sub is not None else None

    async def start(self) -> None:
        """Open what must be opened before the first cycle (a shared Redis transfer ledger)."""
        opener = getattr(self._ledger, "open", None)
        if opener is not None:
            await opener()

    async def close(self) -> None:
        if self._owns_ledger:
            await self._ledger.close()

    # --- /status -----------------------------------------------------------------------------
    def view(self) -> dict[str, Any]:
        """The ``fleet`` part of ``/status``: every account, its balance, forecast, last action."""
        now = self._clock.now()
        rows: list[dict[str, Any]] = []
        for sub in self.accounts.values():
            f, d = sub.forecast, sub.decision
            rows.append({
                "account": sub.key,
                "name": sub.name,
                "spendable_eur": sub.spendable,
                "floor_eur": sub.rules.floor,
                "rate_eur_per_s": f.rate if f else None,
                "seconds_to_empty": _finite(sub.seconds_to_empty(now)),
                "decision": d.reason if d else None,
                "last_action": sub.last_action or None,
                "suspended": sub.suspended,
            })  # fmt: skip
        return {
            "accounts": rows,
            "skipped": [{"account": k, "why": w} for k, w in sorted(self.skipped.items())],
            "list_calls": self.list_calls,
            "primary_reserve_eur": self.primary.reserve,
            "fleet_draw_eur_per_s": {
                "sustained": self.primary.draw[0],
                "burst": self.primary.draw[1],
            },
            "shortfall": [
                {"account": key, "name": self._name(key), "seconds_to_empty": _finite(t)}
                for key, t in self.shortfall
            ],
            "rules": {"file": self.rules.source, "fingerprint": self.rules.fingerprint()},
        }


def _listing(what: str, items: list[str]) -> str:
    named = items[:NAMED_IN_SHORTFALL]
    more = f" and {len(items) - len(named)} more" if len(items) > len(named) else ""
    return f"{len(items)} subaccount(s) {what}: {', '.join(named)}{more}"


def _secs(value: float) -> str:
    if math.isinf(value):
        return "never"
    if value < 60:
        return f"{max(value, 0.0):.0f} s"
    return f"{value / 60:.0f} min" if value < 7200 else f"{value / 3600:.1f} h"


def _finite(value: float) -> float | None:
    return None if math.isinf(value) or math.isnan(value) else round(value, 1)
