"""Readings are judged before they are believed. Pure: samples and context are arguments.

A balance answer can be wrong without being malformed: a cache serves one from 15 s ago, two
answers arrive out of order, a glitch reads ``1E+2`` then ``-1e-7``, a value is absurd
(``1e16``). Believed as they come, such readings move the forecast backwards, show phantom
credits, and buy top-ups. And one real reading can be far out of line: a one-off debit (a monthly
number rental, a transfer to a subaccount) must not be extrapolated as a rate.

The rules, in order:
1. **Implausible** (non-finite, beyond ``max_balance`` in magnitude): a *misread* — counted,
   alerted, dropped; never a crash.
2. **Older than the latest believed reading** (reordered answers): dropped; the forecast never
   moves backwards.
3. **An outlier is held for one more reading.** A drop far beyond what the recent spend explains
   (median/MAD of the recent per-gap rates, after the burn-rate and Hampel-filter habit of
   judging a point by the robust spread of its neighbours), or a rise that no credit in flight
   explains. The next reading decides: if it stays near the held level, the held reading was
   real (a drop that then continues at the burst pace is a *burst*: spend; one that does not is
   a *lump*: reported and kept out of the rate); if it returns near the trajectory before, the
   held reading was a *misread* and is dropped. While a reading is held the decision sees only
   believed readings, so money never moves on a single outlier; the engine looks again soon.
Few gaps of history (start-up) give no robust spread: only a drop of half the balance or more is
held, and the decision's own thin-forecast rule keeps top-ups one at a time. Half the balance or
more in one gap is held with history too: a robust threshold wide enough to pass it would let one
glitch near empty buy the floor's whole need at once.
"""

from __future__ import annotations

import enum
import math
from collections import deque
from dataclasses import dataclass
from decimal import Decimal

from topup_guard.model import BalanceSample

# A drop is an outlier only when it is at least this many EUR (smaller ones are noise) ...
LUMP_MIN_EUR = Decimal("1")
# ... and this many times what the robust recent rate explains in the gap.
LUMP_FACTOR = 4.0
MAD_SIGMAS = 4.0  # plus this many robust standard deviations
# A held drop followed by a gap faster than this multiple of the recent rate is a burst.
BURST_FACTOR = 3.0
BURST_SHARE = 0.2  # ... and at least this share of the held drop's own pace
MIN_GAP = 1.0  # seconds: as in the forecast, a tiny gap is not a huge rate
MIN_HISTORY = 4  # gaps needed before the robust baseline judges outliers
START_SHARE = Decimal("0.5")
RISE_NOISE = Decimal(
    "0.01"
)  # below a cent, a rise is rounding  # before that, a drop of this share of the balance is held
# A held reading is settled by the next reading that *moves*: balances may update in batches,
# so a reading a second later that shows no change says nothing yet. Held at most this long.
HOLD_LIMIT_S = 6.0
_GAPS_KEPT = 32
DEFAULT_MAX_BALANCE = Decimal("10000000")


# One-off debits that come again (batch sends) within this long are a pattern the headroom
# must absorb; a single one (a monthly number rental) is not.
LUMPS_RECUR_WITHIN_S = 6 * 3600.0


def recurring_lump(
    lumps: list[tuple[float, Decimal]], now: float, within: float = LUMPS_RECUR_WITHIN_S
) -> Decimal:
    """The largest of the recent one-off debits when two or more came within ``within`` s
    (``ReadingJudge.lumps``); zero otherwise."""
    recent = [eur for t, eur in lumps if now - t <= within]
    return max(recent) if len(recent) >= 2 else Decimal(0)


def median(values: list[float]) -> float:
    """``statistics.median``, exactly (the guard loads no ``statistics`` module for one line)."""
    ordered = sorted(values)
    n = len(ordered)
    if n % 2:
        return ordered[n // 2]
    return (ordered[n // 2 - 1] + ordered[n // 2]) / 2


class Kind(enum.Enum):
    BELIEVED = "believed"  # feed to the forecast
    LUMP = "lump"  # feed, but the gap's drop is a one-off debit, not a rate
    HELD = "held"  # outlier: wait for the next reading
    MISREAD = "misread"  # implausible or reverted: dropped
    STALE = "stale"  # older than a believed reading: dropped


@dataclass(frozen=True, slots=True)
class Judged:
    sample: BalanceSample
    kind: Kind
    why: str = ""


class ReadingJudge:
    """Judges each new reading against the believed ones; keeps at most one held."""

    def __init__(
        self, max_balance: Decimal = DEFAULT_MAX_BALANCE, floor: Decimal = Decimal(0)
    ) -> None:
        self.max_balance = max_balance
        self.floor = floor  # a held level at or below it is not waited on (see _settle_held)
        self.last: BalanceSample | None = None  # the latest believed reading
        self.held: BalanceSample | None = None
        self._held_why = ""
        self._rates: deque[float] = deque(maxlen=_GAPS_KEPT)  # EUR/s of recent believed gaps
        self._baseline: tuple[float, float] | None = None  # of ``_rates``; None: not computed
        # EUR/s of a burst confirmed and still going (0: none): its next gaps at that pace are
        # the burst, not outliers to confirm again — a 90-s burst polled every 10 s was held
        # (and read twice) at every gap.
        self._burst_pace = 0.0
        self.misreads = 0
        self.stale = 0
        self.lumps: list[tuple[float, Decimal]] = []  # (t, EUR) of recent one-off debits

    @property
    def burst_pace(self) -> float:
        """EUR/s of the burst confirmed and still going on (0: none)."""
        return self._burst_pace

    # --- the robust baseline ---------------------------------------------------------------
    def baseline(self) -> tuple[float, float] | None:
        """(median rate, robust sigma) of recent gaps, or None with too little history."""
        if len(self._rates) < MIN_HISTORY:
            return None
        # Judged two or three times per reading, changed once: computed after each change only.
        if self._baseline is None:
            rates = list(self._rates)
            mid = median(rates)
            mad = median([abs(r - mid) for r in rates])
            self._baseline = (mid, 1.4826 * mad)
        return self._baseline

    def drop_threshold(self, gap: float, rate_hint: float = 0.0) -> Decimal | None:
        """The drop in a gap of ``gap`` s beyond which a reading is held (None: nothing held)."""
        base = self.baseline()
        if base is None:
            return None
        mid, sigma = base
        expected = max(mid, rate_hint if math.isfinite(rate_hint) else 0.0, self._burst_pace)
        span = max(gap, MIN_GAP)
        eur = LUMP_FACTOR * expected * span + MAD_SIGMAS * sigma * span
        return max(LUMP_MIN_EUR, Decimal(repr(min(eur, 1e12))))

    # --- judging ---------------------------------------------------------------------------
    def judge(
        self,
        sample: BalanceSample,
        *,
        rise_explained: bool = False,
        rate_hint: float = 0.0,
        corroborated: bool = False,
    ) -> list[Judged]:
        """The verdicts this reading settles, oldest first (a held reading is settled by the
        next one, so two verdicts can come at once). ``rise_explained``: a credit in flight
        accounts for a rise to this reading; ``corroborated``: other evidence (the senders'
        answers) already showed this level, so a drop to it is no outlier."""
        value = sample.balance
        if not value.is_finite() or abs(value) > self.max_balance or not math.isfinite(sample.t):
            self.misreads += 1
            return [Judged(sample, Kind.MISREAD, "implausible value")]
        if self.last is not None and sample.t < self.last.t:
            self.stale += 1
            return [Judged(sample, Kind.STALE, "older than a reading already believed")]
        if self.held is not None:
            return self._settle_held(sample, rise_explained, rate_hint)
        if self.last is None:
            return [self._believe(sample, Kind.BELIEVED)]
        outlier = (
            "" if corroborated else self._outlier(self.last, sample, rise_explained, rate_hint)
        )
        if outlier:
            self.held, self._held_why = sample, outlier
            return [Judged(sample, Kind.HELD, outlier)]
        return [self._believe(sample, Kind.BELIEVED)]

    def _outlier(
        self, prev: BalanceSample, cur: BalanceSample, rise_explained: bool, rate_hint: float
    ) -> str:
        delta = cur.balance - prev.balance
        if cur.balance <= 0 < prev.balance and -delta >= LUMP_MIN_EUR:
            # Empty is the reading that buys the most, and the favourite of glitches (0,
            # -1e-7): a second reading confirms it (at once if it is empty too).
            return f"a drop of {-delta:.2f} EUR to an empty balance"
        if delta > 0:
            # Spend only lowers a balance: a rise nothing explains is a credit nobody announced
            # (a refund, Vonage's auto-reload) or an old answer (a cache, a reordered reply).
            # The next reading tells which, whatever its size.
            if rise_explained or delta < RISE_NOISE:
                return ""
            return f"a rise of {delta:.2f} EUR that no top-up in flight explains"
        # Half the balance or more in one gap is confirmed before it can become a rate, with
        # history or without: a reading near empty buys nearly what an empty one does (the
        # floor's whole need at once), and a wide spread of recent gaps (or a long gap) can
        # make the robust threshold exceed the balance itself.
        half = max(LUMP_MIN_EUR, abs(prev.balance) * START_SHARE)
        if -delta >= half:
            if len(self._rates) < MIN_HISTORY:
                # No history to judge by (start-up): one glitch must not buy a storm.
                return f"a drop of {-delta:.2f} EUR before there is any history to judge it by"
            return f"a drop of {-delta:.2f} EUR, half the balance or more in one gap"
        if -delta <= LUMP_MIN_EUR:
            return ""  # no threshold is below LUMP_MIN_EUR: the usual poll skips the robust sums
        threshold = self.drop_threshold(cur.t - prev.t, rate_hint)
        if threshold is not None and -delta > threshold:
            return f"a drop of {-delta:.2f} EUR, far beyond the recent spend"
        return ""

    def _settle_held(
        self, sample: BalanceSample, rise_explained: bool, rate_hint: float
    ) -> list[Judged]:
        held, prev = self.held, self.last
        assert held is not None
        assert prev is not None
        self.held = None
        if sample.t < held.t:
            self.held = held
            self.stale += 1
            return [Judged(sample, Kind.STALE, "older than the held reading")]
        waits = held.balance > max(self.floor, Decimal(0))
        if sample.balance == held.balance and waits and sample.t - held.t < HOLD_LIMIT_S:
            # No movement yet: keep waiting for one that tells a burst from a lump. Not at or
            # below the floor: the same level read twice is real, and there either kind needs
            # a top-up now — seconds spent waiting there are messages refused.
            self.held = held
            return [Judged(sample, Kind.HELD, f"{self._held_why}; no movement yet")]
        # Which level does the new reading continue: the held one, or the one before it?
        if abs(sample.balance - held.balance) <= abs(sample.balance - prev.balance):
            kind = Kind.BELIEVED
            if held.balance < prev.balance and not self._continues_fast(held, sample):
                kind = Kind.LUMP
            burst = kind is Kind.BELIEVED and held.balance < prev.balance
            first = self._believe(held, kind, self._held_why, burst=burst)
            # The confirming reading itself may be an outlier against the held one (rare).
            return [first, *self.judge(sample, rise_explained=rise_explained, rate_hint=rate_hint)]
        self.misreads += 1
        dropped = Judged(held, Kind.MISREAD, f"{self._held_why}; the next reading reverted it")
        return [dropped, *self.judge(sample, rise_explained=rise_explained, rate_hint=rate_hint)]

    def _continues_fast(self, held: BalanceSample, nxt: BalanceSample) -> bool:
        """A burst goes on at a pace like the held drop's (and beyond the usual); a lump is
        followed by spend far slower than itself."""
        prev = self.last
        base = self.baseline()
        mid = base[0] if base else 0.0
        rate = float(held.balance - nxt.balance) / max(nxt.t - held.t, MIN_GAP)
        held_rate = (
            float(prev.balance - held.balance) / max(held.t - prev.t, MIN_GAP) if prev else 0
        )
        return rate > 0 and rate > BURST_FACTOR * mid and rate >= held_rate * BURST_SHARE

    def _believe(
        self, sample: BalanceSample, kind: Kind, why: str = "", *, burst: bool = False
    ) -> Judged:
        """``burst``: a held drop the next reading confirmed as a burst (``_continues_fast``)."""
        prev = self.last
        if prev is not None and sample.t > prev.t:
            drop = prev.balance - sample.balance
            if kind is Kind.LUMP:
                self.lumps = [*self.lumps[-9:], (sample.t, drop)]
                self._burst_pace = 0.0
            elif drop >= 0 and prev.balance != 0 and sample.balance != 0:
                # (At zero, demand is refused, not spent: no rate to learn from that gap.)
                rate = float(drop) / max(sample.t - prev.t, MIN_GAP)
                if burst:
                    self._burst_pace = rate
                elif self._burst_pace > 0:
                    # Still a burst while far above the usual; below, it has ended.
                    base = self.baseline()
                    ongoing = base is not None and rate > BURST_FACTOR * base[0]
                    self._burst_pace = max(self._burst_pace, rate) if ongoing else 0.0
                self._rates.append(rate)
                self._baseline = None
            else:
                self._burst_pace = 0.0
        self.last = sample
        return Judged(sample, kind, why)
