"""The loop: poll → judge → settle → forecast → decide → act. It owns no I/O details itself.

Everything it talks to is injected (the account API, the safe top-up and its ledger, the
coordinator, the clock, the event sink), so ``run``, the backtest and the demo execute this very
code. Each room is its own module: readings are judged by ``policy/readings.py``, credits settled
by ``settling.py`` (evidence from ``policy/credits.py``), spend forecast by ``policy/forecast.py``,
the decision made by ``policy/decide.py``, money moved by ``topup.py``; the loop only sequences
them. The period does not drift: each poll is scheduled from the previous poll's *scheduled*
start. Shutdown wakes the sleep and never waits for a top-up's verification: an attempt still in
doubt stays UNKNOWN in the ledger, for the next start (or lease holder) to settle.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import math
from decimal import Decimal

from opentelemetry import trace

from topup_guard import clears, limits, retry
from topup_guard.clock import Clock
from topup_guard.config import Settings
from topup_guard.coordination import Coordinator, SoleGuard
from topup_guard.errors import LedgerError, VonageError
from topup_guard.events import (
    Condition,
    ConditionsChanged,
    EventSink,
    PollCompleted,
    PollFailed,
    Started,
    Stopped,
    TopUpFinished,
)
from topup_guard.ledger.base import Attempt, AttemptState, Ledger
from topup_guard.memory_file import MemoryFile
from topup_guard.model import Balance, BalanceSample
from topup_guard.policy.credits import LATE_WINDOWS, LatencyModel
from topup_guard.policy.decide import Action, Decision, GuardState, PolicyParams, decide
from topup_guard.policy.forecast import Forecast, SpendTracker
from topup_guard.policy.memory import SLOT_S, BurstMemory
from topup_guard.policy.readings import Judged, Kind, ReadingJudge, recurring_lump
from topup_guard.settling import Settlement
from topup_guard.signal_feed import SignalFeed
from topup_guard.signals.inbox import SignalInbox
from topup_guard.status import GuardStatus
from topup_guard.topup import AccountAPI, SafeTopUp, SendOutcome, TopUpRequest

log = logging.getLogger("topup_guard.engine")


class _StopRequested(Exception):
    """Shutdown came while a poll read waited to retry: the read is dropped, nothing is lost."""


# A reading held as an outlier is confirmed this soon (seconds, at most POLL_MIN).
CONFIRM_DELAY = 1.0
# A one-off debit stays reported this long (seconds).
LUMP_REPORT_S = 600.0


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
        safe: SafeTopUp | None = None,
        memory_file: MemoryFile | None = None,
        inbox: SignalInbox | None = None,
    ) -> None:
        self._api = api
        self._warmed = False  # the spend path loaded ahead of the first top-up (``_decide``)
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
        self.judge = ReadingJudge(settings.max_plausible_balance, floor=settings.min_balance)
        self._poll_failures = 0
        self._local_spend = limits.LocalSpend()  # caps on the monotonic clock too
        self._stop: asyncio.Event | None = None  # run()'s stop event, for stoppable waits
        # Built in the composition root (app.py) and injected; built here only for tests and
        # the backtest, which have no root of their own.
        self.safe = safe or SafeTopUp(
            api,
            ledger,
            self._coord,
            clock,
            trx=settings.trx.get_secret_value() if settings.trx else "",
            dry_run=settings.dry_run,
            tracer=self._tracer,
        )
        self.latency = LatencyModel(settings.topup_latency, settings.settle_window,
                                    settings.poll_min)  # fmt: skip
        self.settlement = Settlement(
            self.safe,
            clock,
            self.latency,
            configured_amount=settings.topup_amount,
            settle_window=settings.settle_window,
        )
        self.feed = (
            SignalFeed(inbox, clock, settings.max_plausible_balance) if inbox is not None else None
        )
        self._refused = 0  # out-of-credit refusals senders reported since the last success
        self._last_state: GuardState | None = None
        self._clears: dict[Condition, float] = {}
        self._signal_poll_at = -math.inf  # when signals last brought a poll forward
        self._memory_file = memory_file
        self.memory = memory_file.load() if memory_file else BurstMemory()
        self._memory_saved_slot = -1
        self._believed: BalanceSample | None = None
        self._last_dry_run = -math.inf
        self._misread_detail: str | None = None
        self._held = False
        # EUR a fleet is about to draw from this balance by transfer (set by ``fleet/guard.py``
        # before each step; zero for a single account).
        self.reserve = Decimal(0)
        self.draw: tuple[float, float] = (0.0, 0.0)  # a fleet's flow from this balance, EUR/s
        self._expected_debit = Decimal(0)  # transfers in doubt that the next reading may show

    # --- the loop ----------------------------------------------------------------------------
    async def run(self, stop: asyncio.Event, *, until: float | None = None) -> None:
        """Poll until ``stop`` is set (or the clock reaches ``until``, for backtests).

        Attempts an earlier run left unresolved are settled by the polls themselves (the first
        reading is evidence too), so a restart never delays the first poll.
        """
        self._stop = stop
        self.status.started_at = self._clock.now()
        self._sink.emit(
            Started(
                policy=self._settings.masked(),
                dry_run=self._settings.dry_run,
                coordination=type(self._coord).__name__,
            )
        )
        next_at = self._clock.now()
        reason = "stop requested"
        # One relay for the whole run, not one per sleep: a task made and cancelled on every
        # wake cost more than the rest of the sleep.
        relay = (
            None if self.feed is None else asyncio.ensure_future(_relay(stop, self.feed.inbox.wake))
        )
        try:
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
                if await self._sleep_until(next_at, stop):
                    next_at = self._clock.now()  # brought forward: the schedule restarts here
        finally:
            if relay is not None:
                relay.cancel()
        if self._memory_file is not None:
            self._memory_file.save(self.memory)
        self._sink.emit(Stopped(reason=reason))

    async def _sleep_until(self, at: float, stop: asyncio.Event) -> bool:
        """Sleep until ``at``; sender signals wake it, and may bring the poll forward (True)."""
        if self.feed is None:
            await self._clock.sleep(at - self._clock.now(), wake=stop)
            return False
        wake = self.feed.inbox.wake  # ``run``'s relay sets it when ``stop`` is
        while not stop.is_set() and self._clock.now() < at:
            if not await self._clock.sleep(at - self._clock.now(), wake=wake):
                return False  # time is up: poll as planned
            if stop.is_set():
                return False
            if await self._on_signals():
                return True  # the signals say: look now
        return False

    async def _on_signals(self) -> bool:
        """Take what senders reported; True when a get-balance read should come now."""
        assert self.feed is not None
        news = self.feed.take(self.tracker, self._believed)
        if news.refusals:
            self._refused += news.refusals
        elif news.successes and self._refused:
            self._refused = 0  # sending works again
        if news.refusals:
            log.warning("messages_refused", extra={"refusals": self._refused})
            return True  # messages are being refused now: read the balance at once
        now = self._clock.now()
        if self._last_state is None or now - self._signal_poll_at < self.params.poll_min:
            return False
        watch = self.settlement.watch
        state = dataclasses.replace(
            self._last_state,
            credit_in_flight=watch.confirmed_credit(),
            doubt_credit=watch.doubt_credit(),
            doubt_ends_in=self.settlement.doubt_ends_in(),
        )
        decision = decide(self.tracker.forecast(now), state, self.params, now)
        if decision.action is Action.TOP_UP:
            self._signal_poll_at = now  # confirm by one read; the cycle decides on that
            return True
        return False

    def _signal_interval(self) -> float | None:
        """The longer poll interval that applies while sender signals are flowing."""
        if self.feed is None or not self.feed.flowing(2 * self.params.poll_interval):
            return None
        return self._settings.poll_interval_with_signal or self.params.poll_interval

    async def cycle(self, poll_delay: float = 0.0) -> float:
        """One poll cycle (read, then ``step``); returns seconds until the next one."""
        with self._tracer.start_as_current_span("poll_cycle") as span:
            started = self._clock.now()
            try:
                with self._tracer.start_as_current_span("balance.read"):
                    balance = await self.read_balance(stoppable=True)
            except _StopRequested:
                return 0.0  # nothing was decided or spent; the loop sees ``stop`` and ends
            except VonageError as exc:
                return self.read_failed(exc)
            span.set_attribute("balance.eur", float(balance.value))
            return await self.step(
                balance, poll_delay=poll_delay, read_took=self._clock.now() - started
            )

    async def step(self, balance: Balance, *, poll_delay: float = 0.0,
                   read_took: float = 0.0) -> float:  # fmt: skip
        """Observe one reading, decide, act: the per-account part of a cycle.

        The loop that got the reading (``cycle`` here, the fleet's one list call for many
        accounts) only sequences; returns seconds until this account wants its next reading.
        """
        self._poll_failures = 0
        try:
            forecast = await self._observe(balance)
            await self._adopt_orphans(forecast)
            for event in await self.settlement.expire():
                self._announce(event)
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
        if self._held:
            # Money never moves on a single outlier: look again at once, then decide.
            return min(next_in, self.params.poll_min, CONFIRM_DELAY)
        if decision.action is Action.TOP_UP:
            await self._act(balance, forecast, decision)
            next_in = self.params.poll_min  # look again soon: did it land, is more needed?
        elif decision.blocked_by == "dry_run" and decision.wanted > 0:
            await self._record_dry_run(balance, forecast, decision)
        slow = self._signal_interval()
        if (
            slow is not None
            and decision.action is not Action.TOP_UP
            and not any(not e.late for e in self.settlement.watch.in_flight())
        ):
            next_in = max(next_in, slow)  # the senders' answers watch the balance meanwhile
        return next_in

    def note_debit(self, amount: Decimal, at: float) -> bool:
        """This guard itself moved ``amount`` out of the balance at ``at`` (a fleet's transfer).

        Known money out is neither spend to extrapolate nor an outlier to hold, and it must not
        hide a credit step: the believed reading is lowered by it as a one-off debit, so the next
        reading's gap shows only spend and credits. Skipped (False) when a reading after ``at``
        was already taken: that reading has shown the drop, judged as it came.
        """
        b = self._believed
        if b is None or b.t > at or not (amount.is_finite() and amount > 0):
            return False
        lowered = BalanceSample(max(at, b.t + 1e-3), b.balance - amount)
        try:
            self.tracker.add(lowered, lump=True)
        except ValueError:
            return False
        self.judge.last = lowered
        self._believed = lowered
        return True

    # --- steps -------------------------------------------------------------------------------
    async def read_balance(self, *, stoppable: bool = False) -> Balance:
        """A balance read, retried within bounds (reads are idempotent).

        ``stoppable`` (the poll's own read): a shutdown ends the wait between retries with
        ``_StopRequested`` instead of sitting out up to ``READ_POLICY.max_seconds`` of backoff.
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

    def expect_debit(self, amount: Decimal) -> None:
        """This guard may have moved ``amount`` out (a transfer in doubt): a drop of at least
        that much in the next reading is taken as that debit (plus spend), not as an outlier.
        Never less: were it taken from a drop that was only spend, the believed balance would
        sit below the real one and the next reading would rise — a phantom credit. Withdrawn by
        ``forget_debit`` when the doubt ends before a reading shows it."""
        if amount.is_finite() and amount > 0:
            self._expected_debit += amount

    def forget_debit(self, amount: Decimal) -> None:
        self._expected_debit = max(Decimal(0), self._expected_debit - amount)

    def _take_expected_debit(self, sample: BalanceSample) -> None:
        b, expected = self._believed, self._expected_debit
        if b is None or expected <= 0 or b.t >= sample.t:
            return
        if b.balance - sample.balance >= expected:
            self._expected_debit = Decimal(0)
            self.note_debit(expected, b.t)

    async def _observe(self, balance: Balance) -> Forecast | None:
        """Judge the reading, settle what believed steps prove, feed the forecast."""
        now = self._clock.now()
        sample = BalanceSample(now, balance.value)
        self._take_expected_debit(sample)
        before = self.tracker.forecast(now)
        # The worst rate in view bounds the spend a credit step may have hidden: a burst the
        # windows have not caught up with must not make a real credit look too small.
        rate = max(before.rate, before.peak_rate) if before else 0.0
        # Outliers are judged against the sustained rate, not the peak: one glitched gap must
        # not widen what the next gap may do unheld.
        hint = before.rate if before else 0.0
        explained = self._believed is not None and self.settlement.watch.explains(
            self._believed, sample, rate
        )
        self._held = False
        corroborated = self._corroborated(sample)
        judged_all = self.judge.judge(
            sample, rise_explained=explained, rate_hint=hint, corroborated=corroborated
        )
        for judged in judged_all:
            await self._take(judged, rate)
        forecast = self.tracker.forecast(now)
        if forecast is not None:
            self._remember(forecast)
        self.status.balance = balance.value
        self.status.auto_reload = balance.auto_reload
        self.status.last_balance_at = now
        self.status.forecast = forecast
        return forecast

    def _corroborated(self, sample: BalanceSample) -> bool:
        """The senders' answers since the last poll already showed about this balance."""
        if self.feed is None or self._believed is None:
            return False
        last_t, last_b = self.tracker.last_time(), self.tracker.last_balance()
        if last_t is None or last_b is None or last_t <= self._believed.t:
            return False  # no signal reading since the last poll
        return abs(last_b - sample.balance) <= max(Decimal(1), abs(sample.balance) / 10)

    def _remember(self, forecast: Forecast) -> None:
        wall = self._clock.wall()
        self.memory.observe(wall, forecast.rate_short)
        slot = int(wall // SLOT_S)
        if self._memory_file is not None and slot != self._memory_saved_slot:
            self._memory_saved_slot = slot  # once a quarter-hour: a few hundred bytes
            self._memory_file.save(self.memory)

    async def _take(self, judged: Judged, rate: float) -> None:
        kind, sample = judged.kind, judged.sample
        if kind is Kind.HELD:
            self._held = True
            log.info("reading_held", extra={"detail": judged.why})
            return
        if kind in (Kind.MISREAD, Kind.STALE):
            self._misread_detail = f"{sample.balance} EUR dropped: {judged.why}"
            log.warning("reading_dropped", extra={"detail": self._misread_detail})
            return
        self._misread_detail = None
        matched = Decimal(0)
        if self._believed is not None:
            events, matched = await self.settlement.on_step(self._believed, sample, rate)
            for event in events:
                self._announce(event)
        if matched > 0:
            self.tracker.note_expected_credit(matched)
        try:
            self.tracker.add(sample, lump=kind is Kind.LUMP)
        except ValueError as exc:  # beyond what the forecast can hold: a misread, never a crash
            self._misread_detail = f"{sample.balance} EUR dropped: {exc}"
            return
        self._believed = sample
        if kind is Kind.LUMP:
            log.warning("one_off_debit", extra={"detail": judged.why})

    async def _adopt_orphans(self, forecast: Forecast | None) -> None:
        """Settle attempts left open by a process that is gone (an earlier run, a dead holder).

        Only the replica that may spend does (a watcher's epoch is fenced); an attempt another
        live process is still settling (a CLI top-up) is left to it.
        """
        if not self._coord.may_spend() or self._believed is None:
            return
        wall = self._clock.wall()
        recent = await self._ledger.since(wall - LATE_WINDOWS * self._settings.settle_window)
        candidates = [*await self._ledger.unresolved(), *recent]
        if not candidates:
            return
        rate = forecast.rate if forecast else 0.0
        for event in await self.settlement.adopt(candidates, self._believed, rate):
            self._announce(event)

    async def _decide(
        self, balance: Balance, forecast: Forecast | None
    ) -> tuple[Decision, list[Attempt]]:
        wall = self._clock.wall()
        attempts = await self._ledger.since(wall - limits.DAY)
        unresolved = await self._ledger.unresolved()
        self.settlement.learn_from_ledger(attempts)
        self.settlement.observe_foreign(attempts[-16:])
        amount = self.settlement.amount()
        watch = self.settlement.watch
        # A request on the wire elsewhere (a CLI's PENDING): the ledger refuses a new one anyway.
        foreign = [a for a in unresolved if a.attempt_id not in watch]
        use = self._local_spend.merged(
            limits.usage(attempts, wall, assumed_amount=amount), self._clock.now()
        )
        breaker = limits.breaker_open(use, self.limits, wall)
        in_flight = watch.in_flight()
        # While the amount is unknown, one at a time: a credit of unknown size is on its way.
        unknown = any(e.amount is None and e.mine for e in in_flight)
        state = GuardState(
            auto_reload=balance.auto_reload,
            topup_amount=amount,
            topups_allowed=limits.topups_allowed(use, self.limits, amount),
            breaker_open=breaker,
            in_flight=bool(foreign) or unknown,
            may_spend=self._coord.may_spend(),
            dry_run=self._settings.dry_run,
            credit_in_flight=watch.confirmed_credit(),
            doubt_credit=watch.doubt_credit(),
            doubt_ends_in=self.settlement.doubt_ends_in(),
            latency=self.latency.observed,
            remembered_rate=self.memory.expected(wall, wall + self._hold()),
            blind_for=self.params.poll_min if self._signal_interval() is not None else None,
            settling=any(not e.late for e in in_flight),
            messages_refused=self._refused > 0,
            reserve=self.reserve,
            draw_rate=self.draw[0],
            draw_peak=self.draw[1],
            recurring_lump=recurring_lump(self.judge.lumps, self._clock.now()),
            burst_pace=self.judge.burst_pace,
        )
        self._last_state = state
        # When the conditions that end with time will end, for the messages that announce them.
        self._clears = {}
        if breaker and (at := clears.breaker_clears_at(use, self.limits)) is not None:
            self._clears[Condition.BREAKER_OPEN] = at
        if state.topups_allowed == 0:
            at = clears.caps_clear_at(attempts, self.limits, wall, amount)
            if at is not None:
                self._clears[Condition.CAP_REACHED] = at
        with self._tracer.start_as_current_span("decide") as span:
            decision = decide(forecast, state, self.params, self._clock.now())
            if span.is_recording():  # without a span destination: five calls saved per poll
                span.set_attribute("decision.action", decision.action.value)
                span.set_attribute("decision.reason", decision.reason)
                span.set_attribute("decision.count", decision.count)
                if forecast is not None:
                    span.set_attribute("forecast.rate", forecast.rate)
                    span.set_attribute(
                        "forecast.time_to_exhaustion", _finite(forecast.time_to_exhaustion)
                    )
        if decision.exhaustion_within_horizon and not self._warmed:
            # A top-up is foreseeable: load what sends it now (the client's aiohttp half,
            # ~0.1 s), not in the poll that must send it.
            self._warmed = True
            warm = getattr(self._api, "warm", None)
            if callable(warm):
                warm()
        s = self.status
        s.decision = decision
        s.topups_last_hour, s.topups_last_day = use.last_hour, use.last_day
        s.amount_last_day = use.amount_last_day
        s.breaker_open = breaker
        s.may_spend = state.may_spend
        s.in_flight = [
            {"attempt_id": e.attempt_id, "amount_eur": None if e.amount is None else str(e.amount),
             "confirmed": e.confirmed, "settles_in_s": round(e.deadline - self._clock.now(), 1)}
            for e in in_flight
        ]  # fmt: skip
        s.learnt_amount = None if self._settings.topup_amount else amount
        s.credit_latency_s = self.latency.observed
        s.misreads = self.judge.misreads + self.judge.stale
        s.one_off_debits = [
            {"eur": str(eur), "seconds_ago": round(self._clock.now() - t)}
            for t, eur in self.judge.lumps
        ]
        s.unexplained_credits_eur = self.settlement.unexplained_total
        s.remembered_rate = state.remembered_rate
        s.largest_burst = self.memory.largest()
        return decision, attempts

    def _hold(self) -> float:
        """Seconds money can leave unseen: a poll interval, the credit latency, the margin."""
        p = self.params
        return (
            p.poll_interval + max(p.topup_latency, self.latency.observed or 0.0) + p.safety_margin
        )

    async def _act(self, balance: Balance, forecast: Forecast | None, decision: Decision) -> None:
        before = balance.value
        amount = self.settlement.amount()
        for i in range(decision.count):
            if self._stop is not None and self._stop.is_set():
                return
            req = TopUpRequest(
                balance_before=before,
                expected_amount=amount,
                reason=decision.reason,
                rate=forecast.rate if forecast else 0.0,
                time_to_exhaustion=forecast.time_to_exhaustion if forecast else float("inf"),
            )
            try:
                result = await self.safe.send(
                    req, despite_doubt=decision.despite_doubt, stop=self._stop
                )
            except LedgerError as exc:
                log.error("topup_not_started", extra={"error": str(exc), "attempt": i + 1})
                return
            if result.outcome in (SendOutcome.CONFIRMED, SendOutcome.AMBIGUOUS):
                self._local_spend.record(self._clock.now(), amount)
            event = self.settlement.track(result, req)
            if event is not None:
                self._announce(event)
            if result.outcome is not SendOutcome.CONFIRMED:
                return  # a refusal or a doubt: the next cycle decides with what it proves

    async def _record_dry_run(
        self, balance: Balance, forecast: Forecast | None, decision: Decision
    ) -> None:
        """Audit what a dry run would charge: at most once per poll interval, never counted
        in the caps (``limits.usage``), so the dry run keeps saying what it would do."""
        now = self._clock.now()
        if now - self._last_dry_run < self.params.poll_interval:
            return
        self._last_dry_run = now
        req = TopUpRequest(
            balance_before=balance.value,
            expected_amount=self.settlement.amount(),
            reason=decision.reason,
            rate=forecast.rate if forecast else 0.0,
            time_to_exhaustion=forecast.time_to_exhaustion if forecast else float("inf"),
        )
        try:
            result = await self.safe.send(req, dry_run=True)
        except LedgerError as exc:
            log.error("dry_run_not_recorded", extra={"error": str(exc)})
            return
        event = self.settlement.track(result, req)
        if event is not None:
            self._announce(event)

    def _announce(self, result: TopUpFinished) -> None:
        self.status.last_topup = result
        self._sink.emit(result)

    def read_failed(self, exc: VonageError) -> float:
        """The reading could not be had: say so, back off; returns seconds until the next try."""
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
        # The latest *resolution*, not the latest attempt: one made while another was in doubt
        # may resolve first, and the doubtful one still deserves its alert when it ends badly.
        latest = max(final, key=lambda a: (a.updated_wall, a.attempt_id), default=None)
        if latest is not None and latest.state is AttemptState.UNCONFIRMED:
            active[Condition.UNCONFIRMED_TOPUP] = f"attempt {latest.attempt_id}: {latest.detail}"
        if not self._coord.healthy:
            active[Condition.COORDINATION_DOWN] = "the shared store is unreachable: nobody spends"
        if self._refused:
            active[Condition.MESSAGES_REFUSED] = (
                f"senders report {self._refused} message(s) refused for lack of credit"
            )
        for text in self.settlement.missing.values():
            active[Condition.CREDIT_MISSING] = text
        if self._misread_detail is not None:
            active[Condition.BALANCE_MISREAD] = self._misread_detail
        recent = [(t, eur) for t, eur in self.judge.lumps if self._clock.now() - t < LUMP_REPORT_S]
        if recent:
            active[Condition.ONE_OFF_DEBIT] = (
                f"a one-off debit of {recent[-1][1]:.2f} EUR, kept out of the spend rate"
            )
        # Refreshed on every path (not only when a decision was made): a cycle that fails at
        # the ledger must not leave /status saying this replica may spend.
        self.status.may_spend = self._coord.may_spend()
        self.status.active_conditions = {c.value: d for c, d in active.items()}
        # Account-wide conditions are announced by the replica that may spend (or by everyone
        # while coordination is down): N sidecars must not send N copies of every alert.
        if self.status.may_spend or not self._coord.healthy:
            self._sink.emit(
                ConditionsChanged(
                    wall=self._clock.wall(),
                    active=active,
                    clears_at={c: t for c, t in self._clears.items() if c in active},
                )
            )


async def _relay(stop: asyncio.Event, wake: asyncio.Event) -> None:
    """Wake the signal-aware sleep when a stop is requested."""
    await stop.wait()
    wake.set()


def _finite(x: float) -> float:
    return x if x != float("inf") else 1e12
