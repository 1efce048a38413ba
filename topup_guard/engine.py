"""The loop: poll → forecast → decide → act. It owns no I/O details itself.

Everything it talks to is injected (the account API, the ledger, the coordinator, the clock, the
event sink), so ``run``, the backtest and the demo execute this very code. The period does not
drift: each poll is scheduled from the previous poll's *scheduled* start. Shutdown wakes the sleep;
a top-up in flight is finished (or left for reconciliation) before the loop exits.
"""

from __future__ import annotations

import asyncio
import logging
from decimal import Decimal

from opentelemetry import trace

from topup_guard import limits, retry
from topup_guard.clock import Clock
from topup_guard.config import Settings
from topup_guard.coordination import Coordinator, SoleGuard
from topup_guard.errors import LedgerError, VonageError
from topup_guard.events import (
    Condition,
    ConditionsChanged,
    EventSink,
    Outcome,
    PollCompleted,
    PollFailed,
    Started,
    Stopped,
    TopUpFinished,
)
from topup_guard.ledger.base import Attempt, AttemptState, Ledger
from topup_guard.model import Balance, BalanceSample
from topup_guard.policy.decide import Action, Decision, GuardState, PolicyParams, decide
from topup_guard.policy.forecast import Forecast, SpendTracker
from topup_guard.status import GuardStatus
from topup_guard.topup import AccountAPI, SafeTopUp, TopUpRequest

log = logging.getLogger("topup_guard.engine")


class _StopRequested(Exception):
    """Shutdown came while a poll read waited to retry: the read is dropped, nothing is lost."""


class Engine:
    def __init__(
        self,
        *,
        api: AccountAPI,
        ledger: Ledger,
        clock: Clock,
        settings: Settings,
        sink: EventSink,
        status: GuardStatus | None = None,
        coordinator: Coordinator | None = None,
        tracer: trace.Tracer | None = None,
        account_label: str = "",
    ) -> None:
        self._api = api
        self._ledger = ledger
        self._clock = clock
        self._settings = settings
        self._sink = sink
        self._coord = coordinator or SoleGuard()
        self._tracer = tracer or trace.get_tracer("topup_guard")
        self._label = account_label
        self.params = PolicyParams.from_settings(settings)
        self.limits = limits.Limits(
            max_per_hour=settings.max_topups_per_hour,
            max_per_day=settings.max_topups_per_day,
            max_daily_amount=settings.max_daily_amount,
            breaker_threshold=settings.breaker_threshold,
            breaker_cooldown=settings.breaker_cooldown,
        )
        self.status = status or GuardStatus()
        self.status.dry_run = settings.dry_run
        self.status.poll_interval = settings.poll_interval
        self.tracker = SpendTracker(settings.rate_window_short, settings.rate_window_long)
        self._pending_credit: Decimal | None = None
        self._poll_failures = 0
        self._learnt_amount: Decimal | None = None
        self._local_spend = limits.LocalSpend()  # caps on the monotonic clock too
        self._awaiting_credit: int | None = None  # attempt confirmed by the API, credit not seen
        self._learnt_for: tuple[int, Decimal] | None = None  # to record in the ledger
        self._stop: asyncio.Event | None = None  # run()'s stop event, for stoppable reads
        self.safe = SafeTopUp(
            api,
            ledger,
            self._coord,
            clock,
            trx=settings.trx.get_secret_value() if settings.trx else "",
            read_balance=self.read_balance,
            settle_window=settings.settle_window,
            verify_interval=settings.poll_min,
            dry_run=settings.dry_run,
            tracer=self._tracer,
        )

    # --- the loop ----------------------------------------------------------------------------
    async def run(self, stop: asyncio.Event, *, until: float | None = None) -> None:
        """Poll until ``stop`` is set (or the clock reaches ``until``, for backtests)."""
        self._stop = stop
        self.status.started_at = self._clock.now()
        try:
            # Only the replica that may spend reconciles (as in every cycle): a watcher's epoch
            # is fenced, so reconciling would crash it while the holder has a top-up in flight.
            await self._reconcile_strays(None)
        except LedgerError as exc:
            # Shared store down at start: nobody may spend anyway; the cycle retries (and raises
            # the condition) instead of the process exiting into a restart loop.
            log.error("reconcile_deferred", extra={"error": str(exc)})
        self._sink.emit(
            Started(
                policy=self._settings.masked(),
                dry_run=self._settings.dry_run,
                coordination=type(self._coord).__name__,
            )
        )
        next_at = self._clock.now()
        reason = "stop requested"
        while not stop.is_set():
            if until is not None and self._clock.now() >= until:
                reason = "end of run"
                break
            late = max(0.0, self._clock.now() - next_at)
            next_in = await self.cycle(poll_delay=late)
            self.status.heartbeat = self._clock.now()
            # Schedule from the planned start, not from when the cycle ended: no drift.
            next_at = max(next_at + next_in, self._clock.now())
            if until is not None:
                next_at = min(next_at, max(until, self._clock.now()))
            await self._clock.sleep(next_at - self._clock.now(), wake=stop)
        self._sink.emit(Stopped(reason=reason))

    async def cycle(self, poll_delay: float = 0.0) -> float:
        """One poll cycle; returns seconds until the next one."""
        with self._tracer.start_as_current_span("poll_cycle") as span:
            started = self._clock.now()
            try:
                with self._tracer.start_as_current_span("balance.read"):
                    balance = await self.read_balance(stoppable=True)
            except _StopRequested:
                return 0.0  # nothing was decided or spent; the loop sees ``stop`` and ends
            except VonageError as exc:
                return self._poll_failed(exc)
            self._poll_failures = 0
            read_took = self._clock.now() - started
            span.set_attribute("balance.eur", float(balance.value))
            forecast = self._observe(balance)
            try:
                await self._record_learnt_amount()
                await self._reconcile_strays(forecast)
                decision, attempts = await self._decide(balance, forecast)
            except LedgerError as exc:
                # Without a readable ledger no cap or in-flight check is possible: never spend.
                log.error("ledger_unavailable", extra={"error": str(exc)})
                self._conditions(balance, None, [], extra={Condition.POLL_FAILING: str(exc)})
                return self.params.poll_min
            self._sink.emit(
                PollCompleted(
                    wall=self._clock.wall(),
                    balance=balance,
                    forecast=forecast,
                    decision=decision,
                    duration_s=read_took,
                    poll_delay_s=poll_delay,
                    account=self._label,
                )
            )
            self._conditions(balance, decision, attempts)
            next_in = decision.next_poll_in
            # A dry run records what it would have charged, only when it would really top up.
            would = decision.blocked_by == "dry_run" and decision.wanted > 0
            if decision.action is Action.TOP_UP or would:
                await self._act(balance, forecast, decision)
                next_in = self.params.poll_min  # look again soon: did it land, is more needed?
            return next_in

    # --- steps -------------------------------------------------------------------------------
    async def read_balance(self, *, stoppable: bool = False) -> Balance:
        """A balance read, retried within bounds (reads are idempotent).

        ``stoppable`` (the poll's own read): a shutdown ends the wait between retries with
        ``_StopRequested`` instead of sitting out up to ``READ_POLICY.max_seconds`` of backoff.
        A top-up's verification reads are never stoppable: they settle money already in flight.
        """

        async def sleep(seconds: float) -> None:
            if await self._clock.sleep(seconds, wake=self._stop if stoppable else None):
                raise _StopRequested

        return await retry.call(
            self._api.get_balance,
            name="get-balance",
            retryable=retry.read_is_retryable,
            policy=retry.READ_POLICY,
            sleep=sleep,
        )

    def _observe(self, balance: Balance) -> Forecast | None:
        now = self._clock.now()
        if self._pending_credit is not None:
            self.tracker.note_expected_credit(self._pending_credit)
            self._pending_credit = None
        before = self.tracker.forecast(now) if self._awaiting_credit is not None else None
        credit = self.tracker.add(BalanceSample(now, balance.value))
        if credit is not None and self._awaiting_credit is not None and before is not None:
            # Vonage confirmed a top-up whose credit had not shown yet: the rise, plus what was
            # spent meanwhile, is the auto-reload amount (learnt when not configured).
            spent = Decimal(str(round(before.rate * max(0.0, now - before.t), 2)))
            self._learnt_amount = (credit.amount + spent).quantize(Decimal("0.01"))
            self._learnt_for = (self._awaiting_credit, self._learnt_amount)
            self._awaiting_credit = None
        forecast = self.tracker.forecast(now)
        self.status.balance = balance.value
        self.status.auto_reload = balance.auto_reload
        self.status.last_balance_at = now
        self.status.forecast = forecast
        return forecast

    async def _decide(
        self, balance: Balance, forecast: Forecast | None
    ) -> tuple[Decision, list[Attempt]]:
        wall = self._clock.wall()
        attempts = await self._ledger.since(wall - limits.DAY)
        unresolved = await self._ledger.unresolved()
        use = self._local_spend.merged(
            limits.usage(attempts, wall, dry_run=self._settings.dry_run), self._clock.now()
        )
        amount = self.topup_amount(attempts)
        breaker = limits.breaker_open(use, self.limits, wall)
        state = GuardState(
            auto_reload=balance.auto_reload,
            topup_amount=amount,
            topups_allowed=limits.topups_allowed(use, self.limits, amount),
            breaker_open=breaker,
            in_flight=bool(unresolved),
            may_spend=self._coord.may_spend(),
            dry_run=self._settings.dry_run,
        )
        with self._tracer.start_as_current_span("decide") as span:
            decision = decide(forecast, state, self.params, self._clock.now())
            span.set_attribute("decision.action", decision.action.value)
            span.set_attribute("decision.reason", decision.reason)
            span.set_attribute("decision.count", decision.count)
            if forecast is not None:
                span.set_attribute("forecast.rate", forecast.rate)
                span.set_attribute(
                    "forecast.time_to_exhaustion", _finite(forecast.time_to_exhaustion)
                )
        s = self.status
        s.decision = decision
        s.topups_last_hour, s.topups_last_day = use.last_hour, use.last_day
        s.amount_last_day = use.amount_last_day
        s.breaker_open = breaker
        s.may_spend = state.may_spend
        return decision, attempts

    async def _reconcile_strays(self, forecast: Forecast | None) -> None:
        """Resolve attempts another process left open (a manual top-up, a dead holder).

        The loop itself never leaves an attempt open between cycles, so anything unresolved here
        is someone else's; only the replica that may spend resolves it, by balance, as at start.
        """
        if not self._coord.may_spend() or not await self._ledger.unresolved():
            return
        for result in await self.safe.reconcile(forecast.rate if forecast else 0.0):
            self._after_topup(result)

    async def _record_learnt_amount(self) -> None:
        """Keep a learnt amount in the ledger, so a restart still knows it."""
        if self._learnt_for is None:
            return
        attempt_id, amount = self._learnt_for
        self._learnt_for = None
        await self._ledger.transition(
            attempt_id,
            AttemptState.SUCCEEDED,
            wall=self._clock.wall(),
            epoch=self._coord.epoch,
            credited=amount,
            evidence="api; credit seen at the next poll",
            detail="amount learnt from the balance step",
        )

    def topup_amount(self, attempts: list[Attempt]) -> Decimal | None:
        """The configured amount, else the latest credit a confirmed top-up showed."""
        if self._settings.topup_amount is not None:
            return self._settings.topup_amount
        for a in reversed(attempts):
            if a.state is AttemptState.SUCCEEDED and a.credited is not None and a.credited > 0:
                self._learnt_amount = a.credited
                break
        return self._learnt_amount

    async def _act(self, balance: Balance, forecast: Forecast | None, decision: Decision) -> None:
        count = decision.count if decision.action is Action.TOP_UP else decision.wanted
        before = balance.value
        amount = self.topup_amount(await self._ledger.since(self._clock.wall() - limits.DAY))
        for _ in range(count):
            req = TopUpRequest(
                balance_before=before,
                expected_amount=amount,
                reason=decision.reason,
                rate=forecast.rate if forecast else 0.0,
                time_to_exhaustion=forecast.time_to_exhaustion if forecast else float("inf"),
            )
            try:
                result = await self.safe.execute(req)
            except LedgerError as exc:
                log.error("topup_not_started", extra={"error": str(exc)})
                return
            self._after_topup(result)
            if result.outcome is not Outcome.SUCCEEDED:
                return
            if result.balance_after is not None:
                before = result.balance_after

    def _after_topup(self, result: TopUpFinished) -> None:
        self.status.last_topup = result
        if result.outcome in (Outcome.SUCCEEDED, Outcome.UNCONFIRMED) or (
            result.outcome is Outcome.DRY_RUN and self._settings.dry_run
        ):
            self._local_spend.record(self._clock.now(), result.credited or result.expected_amount)
        self._sink.emit(result)
        if result.outcome is Outcome.SUCCEEDED:
            credit = result.credited or result.expected_amount
            self._pending_credit = (self._pending_credit or Decimal(0)) + (credit or Decimal(0))
            if result.credited is not None and result.credited > 0:
                self._learnt_amount = result.credited
            elif self._settings.topup_amount is None:
                self._awaiting_credit = result.attempt_id

    def _poll_failed(self, exc: VonageError) -> float:
        self._poll_failures += 1
        log.warning("poll_failed", extra={"error_type": type(exc).__name__})
        self._sink.emit(PollFailed(self._clock.wall(), type(exc).__name__, str(exc)))
        self._conditions(None, None, [], extra={Condition.POLL_FAILING: str(exc)})
        # Back off while Vonage is unreachable, but never beyond the healthy poll interval.
        backoff: float = self.params.poll_min * 2.0 ** min(self._poll_failures, 10)
        return min(self.params.poll_interval, backoff)

    def _conditions(
        self,
        balance: Balance | None,
        decision: Decision | None,
        attempts: list[Attempt],
        extra: dict[Condition, str] | None = None,
    ) -> None:
        active: dict[Condition, str] = dict(extra or {})
        if balance is not None:
            if balance.value < self._settings.min_balance:
                active[Condition.LOW_BALANCE] = (
                    f"balance {balance.value:.2f} EUR is below the floor "
                    f"{self._settings.min_balance} EUR"
                )
            if balance.auto_reload is False:
                active[Condition.AUTORELOAD_DISABLED] = "Vonage reports autoReload: false"
        if decision is not None:
            if decision.blocked_by == "caps":
                active[Condition.CAP_REACHED] = decision.reason
            # "Another replica will act" and "a top-up is being verified" are not alarms.
            quiet = decision.blocked_by in ("not_leader", "in_flight")
            if decision.exhaustion_within_horizon and decision.action is Action.WARN and not quiet:
                active[Condition.EXHAUSTION_FORECAST] = decision.reason
        if self.status.breaker_open:
            active[Condition.BREAKER_OPEN] = "consecutive top-ups failed or went unconfirmed"
        final = [
            a for a in attempts if not a.state.unresolved and a.state is not AttemptState.DRY_RUN
        ]
        if final and final[-1].state is AttemptState.UNCONFIRMED:
            active[Condition.UNCONFIRMED_TOPUP] = (
                f"attempt {final[-1].attempt_id}: {final[-1].detail}"
            )
        if not self._coord.healthy:
            active[Condition.COORDINATION_DOWN] = "the shared store is unreachable: nobody spends"
        # Refreshed on every path (not only when a decision was made): a cycle that fails at
        # the ledger must not leave /status saying this replica may spend.
        self.status.may_spend = self._coord.may_spend()
        self.status.active_conditions = {c.value: d for c, d in active.items()}
        # Account-wide conditions are announced by the replica that may spend (or by everyone
        # while coordination is down): N sidecars must not send N copies of every alert.
        if self.status.may_spend or not self._coord.healthy:
            self._sink.emit(ConditionsChanged(wall=self._clock.wall(), active=active))


def _finite(x: float) -> float:
    return x if x != float("inf") else 1e12
