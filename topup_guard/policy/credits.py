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
# Spend hidden in a gap is estimated at up to this multiple of the current rate (bursts).
HIDDEN_SPEND_FACTOR = 2.0
# Matching tolerance: quantisation of the balance and the sub-cent prices.
TOLERANCE = Decimal("0.05")
# A step teaches the amount only when the hidden spend could change it by at most this share.
CLEAN_SHARE = Decimal("0.05")
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


@dataclass(frozen=True, slots=True)
class StepVerdict:
    """What one pair of consecutive readings proves."""

    matches: tuple[CreditMatch, ...]
    unexplained: Decimal  # credit no entry accounts for (>= 0)
    rise: Decimal  # the rise itself (0 when the balance did not rise)


def quantise(value: Decimal) -> Decimal:
    return value.quantize(CENT, rounding=ROUND_HALF_UP)


def snap_amount(low: Decimal, high: Decimal) -> Decimal:
    """The most plausible top-up amount in ``[low, high]``: a whole euro if one fits, since
    payments are whole amounts; else the middle of the interval."""
    whole = low.to_integral_value(rounding="ROUND_CEILING")
    if whole <= high + TOLERANCE:
        return quantise(whole)
    return quantise((low + high) / 2)


class LatencyModel:
    """How long confirmed credits take to show, from the account's own history."""

    def __init__(self, floor: float, ceiling: float, poll_min: float) -> None:
        self.ceiling = max(ceiling, 0.0)  # TOPUP_GUARD_SETTLE_WINDOW: the hard upper bound
        self.floor = min(max(0.0, floor), self.ceiling)  # TOPUP_GUARD_TOPUP_LATENCY
        self._poll_min = poll_min
        self._seen: deque[float] = deque(maxlen=_LATENCIES_KEPT)

    def observe(self, latency: float) -> None:
        if math.isfinite(latency) and latency >= 0:
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
        """Entries still within their window (the money the decision may count)."""
        return tuple(e for e in self._entries if not e.late)

    def confirmed_credit(self) -> Decimal:
        return sum((e.amount or Decimal(0) for e in self.in_flight() if e.confirmed), Decimal(0))

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
        for e in self._entries:
            if e.sent_at > cur.t:
                continue
            if e.amount is None and rise + hidden >= PLAUSIBLE_MIN_TOPUP:  # as in on_step
                return True
            if e.amount is not None and e.amount <= room:
                return True
        return False

    def on_step(self, prev: BalanceSample, cur: BalanceSample, rate: float) -> StepVerdict:
        """Settle what the step from ``prev`` to ``cur`` proves; matched entries leave the set.

        ``rate`` is the current spend estimate (EUR/s), used only to bound the spend the credit
        hid in this gap.
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
                amount = snap_amount(rise, rise + hidden)
            else:
                if e.amount > room - explained:
                    continue
                amount = e.amount
            explained += amount
            matched.append(self._match(e, amount, prev, cur, rise, hidden))
            if e.amount is None:
                break
        if len(matched) > 1:
            matched = [replace(m, clean=False) for m in matched]
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
        clean = prev.balance > 0 and hidden <= rise * CLEAN_SHARE and rise > 0
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
        )


def _hidden_spend(rate: float, gap: float) -> Decimal:
    if not (math.isfinite(rate) and rate > 0):
        return Decimal(0)
    return Decimal(repr(min(rate * gap * HIDDEN_SPEND_FACTOR, 1e9))).quantize(CENT)
