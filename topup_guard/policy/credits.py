"""Credits in flight and the evidence that settles them. Pure: readings and times are arguments.

Why steps between readings, and nothing else. Spend only ever lowers a prepaid balance, so a
reading higher than the reading before it *proves* a credit of at least the rise; nothing else
does. The credit itself lies in ``[rise, rise + spend in the gap]``: whatever was spent between
the two readings after the credit landed is hidden by it. A model of "what the balance would be
without the credit" (``before - rate * elapsed``) fails exactly when it matters: the balance
floors at 0 when demand is refused, and the rate changes in a burst, and then the model's own
error looks like a credit. So a verdict rests on a step between two consecutive readings (or on
Vonage's "200"), and a balance at 0 proves nothing.

Money on its way. Every top-up Vonage confirmed, and every ambiguous one (a 5xx, a timeout: it
may have been applied), is *in flight* until a step shows its credit. The decision counts
confirmed credits as part of the balance, so a credit that shows a few seconds after Vonage's
"200" is not bought again; ambiguous ones it counts only while waiting is safe (``decide``).

Matching. A rise is attributed to entries oldest first, confirmed ones before ambiguous ones
(a confirmed credit is certain to land; an ambiguous one may never): an entry whose amount fits
in what the rise can hold is settled by it, what is left over is an *unexplained* credit
(Vonage's own auto-reload, a refund, a manual payment) — recorded as such, never learnt.

Windows. How long a confirmed credit takes to show is learnt (``LatencyModel``); an ambiguous
entry is watched for a few times that, bounded below by ``TOPUP_GUARD_TOPUP_LATENCY`` and above
by ``TOPUP_GUARD_SETTLE_WINDOW``, so a not-applied answer is known as such in seconds. Past its
window an entry leaves the in-flight set (ambiguous: UNCONFIRMED; confirmed: "credit missing",
an alert) but stays matchable for a while: a credit that lands late is still recognised.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, replace
from decimal import ROUND_HALF_UP, Decimal

from topup_guard.model import BalanceSample

CENT = Decimal("0.01")
# The smallest credit the guard believes a top-up can be: Vonage's payments are whole amounts of
# several EUR (an assumption: no source states the minimum). A smaller rise is a refund, a rounding
# of the balance, or a misread; it never settles an attempt of unknown amount or teaches one.
PLAUSIBLE_MIN_TOPUP = Decimal("5")
# Spend hidden in a gap is bounded by this multiple of the worst rate in view (its peak).
HIDDEN_SPEND_FACTOR = 2.0
# A confirmed credit is matched by a rise of at least this share of it (spend hid the rest).
CONFIRMED_SHARE = Decimal("0.5")
# Matching tolerance: quantisation of the balance and the sub-cent prices.
TOLERANCE = Decimal("0.05")
# Verification of an ambiguous top-up lasts this many observed latencies.
WINDOW_LATENCIES = 3.0
# After its window an entry stays matchable this many windows more (a late credit).
LATE_WINDOWS = 10.0
_LATENCIES_KEPT = 20


@dataclass(frozen=True, slots=True)
class InFlight:
    """A top-up whose credit has not shown yet."""

    attempt_id: int
    amount: Decimal | None  # the credit expected (configured or learnt); None when unknown
    sent_at: float  # clock time Vonage answered (or, reconciled at start, the best estimate)
    confirmed: bool  # Vonage said 200 + error-code "200"; False: ambiguous, may not be applied
    deadline: float  # clock time after which it leaves the in-flight set
    baseline: Decimal | None = None  # the balance read before it was sent (for the evidence)
    late: bool = False  # past its deadline, still matchable
    mine: bool = True  # False: another live process (a CLI top-up) settles it; only counted


@dataclass(frozen=True, slots=True)
class CreditMatch:
    """An entry settled by a step."""

    entry: InFlight
    credited: Decimal
    latency: float  # seconds from sent_at to the reading that showed it (an upper bound)
    clean: bool  # one credit in a short gap above zero: good enough to learn the amount from
    evidence: str
    low: Decimal = Decimal(0)  # the credit lies in [low, high] (one credit alone in its gap)
    high: Decimal = Decimal(0)
    alone: bool = True  # the only credit matched in its gap


@dataclass(frozen=True, slots=True)
class StepVerdict:
    """What one pair of consecutive readings proves."""

    matches: tuple[CreditMatch, ...]
    unexplained: Decimal  # credit no entry accounts for (>= 0)
    rise: Decimal  # the rise itself (0 when the balance did not rise)


def quantise(value: Decimal) -> Decimal:
    return value.quantize(CENT, rounding=ROUND_HALF_UP)


def estimate_amount(rise: Decimal, rate: float, gap: float, hidden: Decimal) -> Decimal:
    """The credit behind a rise, when its amount is unknown.

    The balance moved by the credit minus everything spent in the gap, so the best estimate is
    the rise plus the spend rate over the gap (never more than ``hidden``, its upper bound).
    Payments are whole euros: the nearest one is taken when the estimate is within half the
    hidden spend of it.
    """
    spent = Decimal(repr(max(0.0, rate) * max(0.0, gap))) if math.isfinite(rate) else 0
    estimate = rise + min(Decimal(spent), hidden)
    whole = estimate.to_integral_value(rounding=ROUND_HALF_UP)
    slack = max(TOLERANCE * 5, hidden / 2)
    return quantise(whole if abs(estimate - whole) <= slack else estimate)


class AmountBounds:
    """What confirmed credits say about the top-up amount, which Vonage keeps the same for every
    top-up (the amount of the payment auto-reload was enabled on). Each credit alone in its gap
    lies in ``[rise, rise + hidden spend]``; the amount lies in all of them, so their intersection
    narrows with every top-up, and the amount is known once it holds one whole euro — even in a
    burst, where no single step is precise."""

    def __init__(self) -> None:
        self.low: Decimal | None = None
        self.high: Decimal | None = None

    def add(self, low: Decimal, high: Decimal) -> Decimal | None:
        """Narrow by one credit's interval; the amount once it is the only whole euro left.

        A rise is a sure lower bound (spend only lowers the balance); the upper bound rests on
        the spend-rate estimate, which a burst can outrun — so an upper bound below what the
        rises already prove is the estimate's error, and is ignored rather than believed."""
        self.low = low if self.low is None else max(self.low, low)
        if high >= self.low:
            self.high = high if self.high is None or self.high < self.low else min(self.high, high)
        if self.high is None or self.high < self.low:
            return None
        wholes = _wholes(self.low - TOLERANCE, self.high + TOLERANCE)
        if len(wholes) == 1 and wholes[0] >= PLAUSIBLE_MIN_TOPUP:
            return quantise(wholes[0])
        return None


class LatencyModel:
    """How long confirmed credits take to show, from the account's own history."""

    def __init__(self, floor: float, ceiling: float, poll_min: float) -> None:
        self.ceiling = max(ceiling, 0.0)  # TOPUP_GUARD_SETTLE_WINDOW: the hard upper bound
        self.floor = min(max(0.0, floor), self.ceiling)  # TOPUP_GUARD_TOPUP_LATENCY
        self._poll_min = poll_min
        self._seen: deque[float] = deque(maxlen=_LATENCIES_KEPT)

    def observe(self, latency: float) -> None:
        """Note how long a confirmed credit took to show. It is an upper bound (the time to the
        reading that showed it), so one beyond the settle window says more about missing
        readings than about Vonage, and is not learnt."""
        if math.isfinite(latency) and 0 <= latency <= self.ceiling:
            self._seen.append(latency)

    @property
    def observed(self) -> float | None:
        """The slowest recent confirmed credit, or None before the first."""
        return max(self._seen) if self._seen else None

    @property
    def expected(self) -> float:
        """Seconds a credit is expected to take: observed, never below the configured latency."""
        seen = self.observed
        return self.floor if seen is None else max(self.floor, seen)

    def window(self) -> float:
        """Seconds to watch an ambiguous top-up: a few expected latencies and at least two
        fast polls, never more than the settle window."""
        base = WINDOW_LATENCIES * self.expected
        return min(self.ceiling, max(self.floor, base, 2 * self._poll_min))


class CreditWatch:
    """The in-flight set, and the late entries still matchable."""

    def __init__(self) -> None:
        self._entries: list[InFlight] = []

    # --- the set ---------------------------------------------------------------------------
    def add(self, entry: InFlight) -> None:
        self._entries = [e for e in self._entries if e.attempt_id != entry.attempt_id]
        self._entries.append(entry)

    def discard(self, attempt_id: int) -> None:
        self._entries = [e for e in self._entries if e.attempt_id != attempt_id]

    def __contains__(self, attempt_id: object) -> bool:
        return any(e.attempt_id == attempt_id for e in self._entries)

    @property
    def entries(self) -> tuple[InFlight, ...]:
        return tuple(self._entries)

    def in_flight(self) -> tuple[InFlight, ...]:
        """The money the decision counts: entries within their window, and confirmed ones
        past it. Vonage said those were applied: their lateness raises ``credit_missing``, but
        buying them again on a timer is what turns a slow or misread balance into a storm, so
        they are counted until forgotten (``LATE_WINDOWS`` windows later)."""
        return tuple(e for e in self._entries if not e.late or e.confirmed)

    def confirmed_credit(self) -> Decimal:
        """EUR confirmed and on its way, overdue or not; an unknown amount counts as the least
        a top-up can be (so more is bought only if even more is needed, never the same again)."""
        return sum(
            (e.amount or PLAUSIBLE_MIN_TOPUP for e in self.in_flight() if e.confirmed), Decimal(0)
        )

    def doubt_credit(self) -> Decimal:
        """EUR that may or may not arrive: ambiguous attempts in their window."""
        return sum((e.amount or PLAUSIBLE_MIN_TOPUP for e in self.doubtful()), Decimal(0))

    def doubtful(self) -> tuple[InFlight, ...]:
        return tuple(e for e in self.in_flight() if not e.confirmed)

    # --- time ------------------------------------------------------------------------------
    def expire(self, now: float) -> list[InFlight]:
        """Entries whose window ended at ``now``: marked late (still matchable) and returned
        once; late entries past ``LATE_WINDOWS`` more are forgotten."""
        ended: list[InFlight] = []
        kept: list[InFlight] = []
        for e in self._entries:
            window = max(e.deadline - e.sent_at, 1.0)
            if e.late and now > e.deadline + LATE_WINDOWS * window:
                continue  # forgotten: too late to tell a late credit from anything else
            if not e.late and now >= e.deadline:
                e = replace(e, late=True)
                ended.append(e)
            kept.append(e)
        self._entries = kept
        return ended

    # --- evidence --------------------------------------------------------------------------
    def explains(self, prev: BalanceSample, cur: BalanceSample, rate: float) -> bool:
        """Whether some entry could account for a rise from ``prev`` to ``cur`` (no change)."""
        rise = cur.balance - prev.balance
        if rise <= 0:
            return False
        hidden = _hidden_spend(rate, max(0.0, cur.t - prev.t))
        room = rise + hidden + TOLERANCE
        candidates = [e for e in self._entries if e.sent_at <= cur.t]
        if all(e.amount is not None for e in candidates):
            most = sum((e.amount or Decimal(0) for e in candidates), Decimal(0))
            # Spend in the gap only hides credit: a rise is at most the credits behind it,
            # whatever the rate (a glitched low reading's rate must not widen this).
            if rise > most + TOLERANCE + PLAUSIBLE_MIN_TOPUP:
                return False  # more than every credit on its way could add: something else
        for e in self._entries:
            if e.sent_at > cur.t:
                continue
            if e.amount is None and rise + hidden >= PLAUSIBLE_MIN_TOPUP:  # as in on_step
                return True
            if e.amount is not None and e.amount <= room:
                return True
            if e.amount is not None and e.confirmed and rise >= e.amount * CONFIRMED_SHARE:
                return True  # as on_step settles it
        return False

    def on_step(
        self, prev: BalanceSample, cur: BalanceSample, rate: float, *, across_gap: bool = False
    ) -> StepVerdict:
        """Settle what the step from ``prev`` to ``cur`` proves; matched entries leave the set.

        ``rate`` is the current spend estimate (EUR/s), used only to bound the spend the credit
        hid in this gap. ``across_gap``: the two readings straddle a time the spend is unknown
        for (a restart), so any entry is matched by a rise of at least half its amount.
        """
        rise = cur.balance - prev.balance
        if rise <= 0:
            return StepVerdict((), Decimal(0), Decimal(0))
        gap = max(0.0, cur.t - prev.t)
        hidden = _hidden_spend(rate, gap)
        room = rise + hidden + TOLERANCE  # the most the credits in this gap can add up to
        order = sorted(
            (e for e in self._entries if e.sent_at <= cur.t),
            key=lambda e: (e.late, not e.confirmed, e.sent_at),
        )
        matched: list[CreditMatch] = []
        explained = Decimal(0)
        for e in order:
            if e.amount is None:
                if matched or rise + hidden < PLAUSIBLE_MIN_TOPUP:
                    continue  # an unknown amount takes a whole plausible step on its own
                # From zero the spend in the gap was refused demand, not a rate: the rise is
                # the best figure (and a sure lower bound).
                spent_for = cur.t - prev.t if prev.balance > 0 else 0.0
                amount = estimate_amount(rise, rate, spent_for, hidden)
            else:
                left = room - explained
                # A confirmed credit is certain to land: a rise of at least half of it is it,
                # even when spend in the gap (a burst the rate has not caught up with) hid more
                # than the bound allows. An ambiguous one must fit the bound — except across a
                # gap of unknown spend (a restart), where a rise that large proves a credit.
                # A step proves a credit only by rising: one more entry needs some of the rise
                # left for it, not a room that the spend bound alone makes (two credits "in" a
                # rise of one would leave the other on its way unwatched, and its own rise later
                # read as the next top-up's).
                fits = e.amount <= left and (not matched or rise - explained > TOLERANCE)
                share = rise - explained >= e.amount * CONFIRMED_SHARE
                if not fits and not ((e.confirmed or across_gap) and share):
                    continue
                amount = e.amount
            explained += amount
            matched.append(self._match(e, amount, prev, cur, rise, hidden))
            if e.amount is None:
                break
        if len(matched) > 1:
            matched = [replace(m, clean=False, alone=False) for m in matched]
        for m in matched:
            self.discard(m.entry.attempt_id)
        unexplained = max(Decimal(0), rise - explained)
        if unexplained <= TOLERANCE:
            unexplained = Decimal(0)
        return StepVerdict(tuple(matched), quantise(unexplained), rise)

    @staticmethod
    def _match(
        e: InFlight,
        amount: Decimal,
        prev: BalanceSample,
        cur: BalanceSample,
        rise: Decimal,
        hidden: Decimal,
    ) -> CreditMatch:
        # Clean: above zero, and the interval the credit must lie in holds one whole euro (the
        # payment) and the amount, so the step tells the amount without doubt.
        wholes = _wholes(rise - TOLERANCE, rise + hidden + TOLERANCE)
        clean = prev.balance > 0 and rise > 0 and len(wholes) == 1 and wholes[0] == amount
        low, high = quantise(rise), quantise(rise + hidden)
        when = "late, " if e.late else ""
        evidence = (
            f"balance step {prev.balance:.2f} -> {cur.balance:.2f} EUR between two readings"
            f" {cur.t - prev.t:.1f} s apart ({when}{cur.t - e.sent_at:.1f} s after the answer):"
            f" a credit of {low}" + (f"..{high}" if high != low else "") + " EUR"
        )
        if prev.balance <= 0:
            evidence += "; the balance was at 0 before it, so spend in the gap is unknown"
        return CreditMatch(
            entry=e,
            credited=quantise(amount),
            latency=max(0.0, cur.t - e.sent_at),
            clean=clean,
            evidence=evidence,
            low=rise,
            # From zero, the demand refused before the credit took its share unseen: no bound.
            high=rise + hidden if prev.balance > 0 else Decimal("1e12"),
        )


def _wholes(low: Decimal, high: Decimal) -> list[Decimal]:
    """The whole euros in ``[low, high]`` (at most a few; an empty list for a wide interval)."""
    first = low.to_integral_value(rounding="ROUND_CEILING")
    if high - first > 3:
        return [first, first + 1, first + 2, first + 3, first + 4]  # too wide: not one
    out = []
    while first <= high:
        out.append(first)
        first += 1
    return out


def _hidden_spend(rate: float, gap: float) -> Decimal:
    if not (math.isfinite(rate) and rate > 0):
        return Decimal(0)
    return Decimal(repr(min(rate * gap * HIDDEN_SPEND_FACTOR, 1e9))).quantize(CENT)
