"""One subaccount in a fleet: its readings judged, its spend forecast, its decision.

The same pure policy as the single account (``policy/decide.py``), with the subaccount's own
rules: its floor and headroom, transfers as the unit of money, and a latency of one API call —
a balance transfer is applied when Vonage answers, not minutes later like a card payment. The
money a subaccount spends is its *spendable* amount: the balance plus the credit facility
(``credit_limit`` is zero or negative; vonage-account-api.md §6.2).

What it keeps is small on purpose: a fleet holds a thousand of these, and a list call every
few seconds would otherwise give each a record every few seconds. Every reading is judged (the
judge keeps a few numbers), and the decision always sees the latest believed balance; but the
spend windows record a reading only every ``RECORD_SPACING_S`` (a rate needs no finer grain),
at once when it settles a transfer or is a lump, and a reading that repeats the last one (an
idle account) refreshes nothing for up to ``IDLE_REFRESH_S`` (the decision for an unchanged
balance can only relax with time), and nothing at all once the windows hold no spend. Those
quiet readings were still seen: when the balance moves, the last of them is recorded first, so
the change is dated to the last cycle, not spread over the quiet stretch. None of this applies
before the windows hold two records: an idle account below its floor needs its second record to
be funded at all, not minutes later. Records older than the short window are thinned
(``OLD_SPACING_S``). So a quiet account keeps two records and a busy one about twenty.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from decimal import Decimal

from topup_guard.fleet.rules import AccountRules
from topup_guard.model import BalanceSample, Subaccount
from topup_guard.policy.decide import Action, Decision, GuardState, PolicyParams, decide
from topup_guard.policy.forecast import Forecast, SpendTracker, time_to_level
from topup_guard.policy.readings import Judged, Kind, ReadingJudge

# Seconds a transfer takes to show in the balance: it is applied when the call returns.
TRANSFER_LATENCY = 1.0
# An unchanged reading is recorded (and the decision redone) at most this often.
IDLE_REFRESH_S = 300.0
# A changed reading goes into the spend windows at most this often (the latest is always used),
# unless it drops faster than the windows' rate explains: a burst starting is recorded at once.
RECORD_SPACING_S = 60.0
SURPRISE_FACTOR = 2.0
SURPRISE_MIN_EUR = Decimal("0.5")
# A held reading is confirmed this soon (as the primary's engine does).
CONFIRM_DELAY = 1.0
# Records kept per window: enough for the rate, bounded for a thousand accounts.
MAX_SAMPLES = 200
# Records older than the short window are thinned to about one per this many seconds: the long
# window needs no finer grain, and a steady account then keeps ~20 records, not ~60 an hour.
OLD_SPACING_S = 300.0


@dataclass(frozen=True, slots=True)
class Need:
    """What a subaccount wants from the primary now, and how soon it runs dry without it."""

    key: str
    amount: Decimal  # EUR to transfer now (0: nothing)
    seconds_to_empty: float
    reason: str


class SubaccountGuard:
    def __init__(
        self,
        sub: Subaccount,
        rules: AccountRules,
        base: PolicyParams,
        windows: tuple[float, float] = (300.0, 3600.0),
    ) -> None:
        self.key = sub.api_key
        self.name = sub.name
        self.rules = rules
        self.params = dataclasses.replace(
            base,
            min_balance=rules.floor,
            min_headroom=rules.min_headroom,
            max_balance=rules.max_balance,
            topup_latency=TRANSFER_LATENCY,
            on_doubt="wait",  # a transfer in doubt is settled by listing within seconds
            keep_floor_when_idle=True,
        )
        self.tracker = SpendTracker(*windows, max_samples=MAX_SAMPLES, old_spacing=OLD_SPACING_S)
        self.judge = ReadingJudge()
        self.spendable: Decimal | None = None
        self.suspended = sub.suspended
        self.credit_limit = sub.credit_limit or Decimal(0)
        self.forecast: Forecast | None = None
        self.decision: Decision | None = None
        self.last_action = ""  # for /status: the latest transfer, in words
        self._recorded_at = -1e18
        self._latest: BalanceSample | None = None  # believed, maybe newer than the windows
        self._records = 0
        self._credit_pending = False  # a transfer landed since the last reading: a rise is due
        self._flat_seen_at = -1e18  # the latest unrecorded reading that repeated the last one
        self._decided: tuple[tuple[object, ...], float] | None = None  # (inputs, when)
        self.misread = ""

    # --- observe ---------------------------------------------------------------------------
    def observe(self, sub: Subaccount, now: float) -> bool:
        """Take this cycle's reading; False when it was not believed (held, dropped) or idle."""
        self.name = sub.name
        self.suspended = sub.suspended
        self.credit_limit = sub.credit_limit or Decimal(0)
        if sub.balance is None:
            return False
        spendable = sub.balance - min(self.credit_limit, Decimal(0))
        if (
            spendable == self.spendable
            and self.forecast is not None  # a forecast needs two records: take the second
            and not self._credit_pending
            and self.judge.held is None
            and (now - self._recorded_at < IDLE_REFRESH_S or self._nothing_to_forget())
        ):
            self._flat_seen_at = now
            return False  # idle: nothing new to learn, the last decision stands
        if (
            spendable != self.spendable
            and self.spendable is not None
            and self._flat_seen_at - self._recorded_at >= RECORD_SPACING_S
        ):
            # The balance stood still, unrecorded, until the last cycle: say so first, or the
            # change would be spread over the whole quiet stretch (a burst read as a trickle).
            self._record_flat(self.spendable, self._flat_seen_at)
        sample = BalanceSample(now, spendable)
        verdicts = self.judge.judge(
            sample, rise_explained=self._credit_pending, rate_hint=self._rate()
        )
        believed = False
        for judged in verdicts:
            believed = self._take(judged) or believed
        return believed

    def _take(self, judged: Judged) -> bool:
        if judged.kind in (Kind.HELD, Kind.MISREAD, Kind.STALE):
            self.misread = "" if judged.kind is Kind.HELD else judged.why
            return False
        self.misread = ""
        sample = judged.sample
        rose = self.spendable is not None and sample.balance > self.spendable
        due = sample.t - self._recorded_at >= RECORD_SPACING_S or self._records < 2
        if (
            due
            or rose
            or self._credit_pending
            or judged.kind is Kind.LUMP
            or self._surprise(sample)
        ):
            try:
                self.tracker.add(sample, lump=judged.kind is Kind.LUMP)
            except ValueError:
                return False
            self._recorded_at = sample.t
            self._records += 1
            if rose:
                self._credit_pending = False  # the transfer's rise was seen
        self.spendable = sample.balance
        self._latest = sample
        return True

    def _nothing_to_forget(self) -> bool:
        """The windows hold no spend: a refresh record would teach them nothing, so a quiet
        account keeps a few records, not one every ``IDLE_REFRESH_S``."""
        f = self.forecast
        return f is not None and f.rate <= 0 and f.peak_rate <= 0

    def _record_flat(self, balance: Decimal, t: float) -> None:
        for judged in self.judge.judge(BalanceSample(t, balance), rate_hint=self._rate()):
            if judged.kind not in (Kind.HELD, Kind.MISREAD, Kind.STALE):
                try:
                    self.tracker.add(judged.sample)
                except ValueError:
                    return
                self._recorded_at = judged.sample.t
                self._records += 1

    def _surprise(self, sample: BalanceSample) -> bool:
        """The drop since the last record is more than the windows' rate explains."""
        last_t, last_b = self.tracker.last_time(), self.tracker.last_balance()
        if last_t is None or last_b is None:
            return True
        drop = last_b - sample.balance
        expected = Decimal(repr(min(self._rate() * (sample.t - last_t), 1e9)))
        return drop > SURPRISE_MIN_EUR and drop > expected * Decimal(SURPRISE_FACTOR)

    def note_credit(self, amount: Decimal) -> None:
        """A transfer of ``amount`` to this account was applied: its rise is a credit, not
        a misread, and the spend in that gap is recovered from it."""
        self.tracker.note_expected_credit(amount)
        self._credit_pending = True

    def _rate(self) -> float:
        return self.forecast.rate if self.forecast is not None else 0.0

    # --- decide ----------------------------------------------------------------------------
    def decide(
        self, now: float, *, allowed: int, in_flight: bool, may_spend: bool, dry_run: bool
    ) -> Decision:
        """The policy's answer for this account now (transfers as the unit of money)."""
        state = GuardState(
            auto_reload=None,
            topup_amount=self.rules.transfer_amount,
            topups_allowed=allowed,
            breaker_open=False,
            in_flight=in_flight,
            may_spend=may_spend,
            dry_run=dry_run,
            settling=self._credit_pending,
        )
        inputs = (state, self._latest, self._records, self.judge.held)
        if self.decision is not None and self._still_holds(inputs, now):
            return self.decision
        self.forecast = self._forecast(now)
        self.decision = decide(self.forecast, state, self.params, now)
        self._decided = (inputs, now)
        return self.decision

    def _still_holds(self, inputs: tuple[object, ...], now: float) -> bool:
        """The last decision stands for a quiet account: nothing to do, nothing spent in its
        windows, no reading taken and nothing else changed since — time alone cannot move a
        balance that nobody spends. (Most of a fleet is quiet; deciding each of them anew
        every cycle was most of a cycle's CPU.) Redone every ``IDLE_REFRESH_S`` regardless."""
        d, f = self.decision, self.forecast
        if d is None or f is None or d.action is not Action.NOTHING or d.blocked_by is not None:
            return False
        if f.rate > 0 or f.peak_rate > 0 or self._decided is None:
            return False
        before, at = self._decided
        return before == inputs and now - at < IDLE_REFRESH_S

    def _forecast(self, now: float) -> Forecast | None:
        """The windows' forecast, carried to the latest believed balance."""
        f = self.tracker.forecast(now)
        latest = self._latest
        if f is None or latest is None or latest.t <= f.t:
            return f
        return dataclasses.replace(
            f,
            t=latest.t,
            balance=latest.balance,
            time_to_exhaustion=time_to_level(latest.balance, Decimal(0), f.rate),
        )

    def need(self, now: float) -> Need:
        """The transfer the last decision wants (one transfer of ``count`` amounts)."""
        d = self.decision
        empty = self.seconds_to_empty(now)
        if self.judge.held is not None:
            # As for the primary: money never moves on a single outlier. A transfer now would
            # also spoil the next reading's verdict on it (its rise would look like a return).
            return Need(self.key, Decimal(0), empty, "a reading is held: confirming it first")
        if d is None or d.action is not Action.TOP_UP or d.count <= 0:
            return Need(self.key, Decimal(0), empty, d.reason if d else "no forecast yet")
        return Need(self.key, self.rules.transfer_amount * d.count, empty, d.reason)

    def next_reading_in(self) -> float | None:
        """Seconds until this account wants its next reading (soon while one is held)."""
        if self.judge.held is not None:
            return CONFIRM_DELAY
        return self.decision.next_poll_in if self.decision is not None else None

    def flow(self) -> tuple[float, float]:
        """(sustained rate, burst rate) in EUR/s: what this account draws from the primary."""
        f = self.forecast
        if f is None:
            return 0.0, 0.0
        rate = max(f.rate, 0.0)
        return rate, max(rate, f.peak_rate)

    def seconds_to_empty(self, now: float) -> float:
        f = self.forecast
        if f is None or self.spendable is None:
            return float("inf")
        burst = max(f.rate, f.peak_rate)
        return time_to_level(self.spendable, Decimal(0), burst) - max(0.0, now - f.t)

    def label(self) -> str:
        """How messages name the account: its name and key (keys are not secrets)."""
        return f"{self.name} ({self.key})" if self.name else self.key
