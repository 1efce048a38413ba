"""Spend forecast from balance samples: how fast money leaves, and when it runs out.

Why spend and not the balance level: a regression on the level reads a top-up as negative spend
and says "never runs out" (prior-art §4.1, §4.6). Here every gap between two samples is split into
*spend* (the drop) and *credit* (the rise); spend feeds a monotonic counter, credits are recorded
apart and never offset spend.

How the rate is measured: ``rate_w = spend in window / covered seconds in window``, with both
counters interpolated linearly inside the gap that straddles the window's start. Dividing by the
time the samples actually cover (not by the window length, nor by the time between drops) keeps
irregular and missing polls from biasing it, and makes sparse quantised charges (one 0.0075 EUR
message now and then) a small non-zero rate rather than zero between messages.

A rise hides whatever was spent in the same gap. With ``note_expected_credit`` the hidden spend
is recovered (``amount - rise``); without it the gap's spend is unknown, so the gap's seconds are
left out of the covered time — the rate elsewhere stands in for it instead of a false zero.
The peak's 30-s windows are short enough for one such gap to fill them, so there its seconds
spend at the sustained rate rather than vanish (a window of 2 known seconds is a per-gap rate).

A drop the next reading takes back was not spent. Spend only lowers a balance: when a reading
rises from a drop and, net of the credit expected, lands at least half-way back to the level
before it (and not above it), the dropped reading was wrong (a glitch within what a burst might
do, so believed). The balance then was at least the level the next reading shows, so the dropped
reading is *corrected* to that level, peak included; spend over the two gaps stays exactly what
the good readings prove. Kept as read, the glitch would stay in the rate and the peak for as long
as the windows hold it, and the headroom sized by that peak would buy a top-up at every poll.
A correction only ever lowers spend and adds known time, so it never raises a rate.

Windows end at the latest sample; ``now`` only lowers confidence when that sample is stale (the
caller extrapolates from ``Forecast.t``). Memory is bounded: only the samples inside the long
window (plus one before it, for interpolation) are kept, capped at ``max_samples``. With
``old_spacing`` (a fleet keeps a thousand trackers), the samples older than the short window are
thinned to about one per ``old_spacing`` seconds: they serve only the long window, whose totals
are running sums and so stay exact; only the interpolation inside its first gap grows coarser.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import NamedTuple

from topup_guard.model import BalanceSample

# A gap shorter than this counts as this long when turned into a rate: two polls a millisecond
# apart must not make one 0.0075 EUR message look like a 7.5 EUR/s burst.
MIN_GAP = 1.0
# The peak rate is the highest rate over any window this long: per-gap rates would make a
# one-second confirmation read after a batched balance update look like a huge burst.
PEAK_WINDOW = 30.0
# Values beyond these are misreads, not balances or clock times; refusing them keeps every
# float below finite (no inf, no NaN) whatever the input.
MAX_ABS_BALANCE = Decimal("1e15")
MAX_ABS_TIME = 1e15
# A rise counts as the expected top-up only if it is at least this share of it; a smaller rise
# (a refund while the top-up is still on its way) would otherwise be read as a huge hidden spend.
EXPECTED_MATCH_SHARE = Decimal("0.5")
_ZERO = Decimal(0)


@dataclass(frozen=True, slots=True)
class Credit:
    """A rise of the balance (a top-up, Vonage's auto-reload, a refund) seen at ``t``."""

    t: float
    amount: Decimal


@dataclass(frozen=True, slots=True)
class Forecast:
    """What the samples say about spend, as of the latest sample ``t``."""

    t: float
    balance: Decimal
    rate_short: float
    rate_long: float
    rate: float
    peak_rate: float
    time_to_exhaustion: float
    confidence: float
    samples: int
    spend_total: Decimal
    credits_total: Decimal

    def time_to(self, level: Decimal) -> float:
        """Seconds from ``t`` until the balance reaches ``level`` at ``rate``; never NaN or < 0."""
        return time_to_level(self.balance, level, self.rate)


def time_to_level(balance: Decimal, level: Decimal, rate: float) -> float:
    """Seconds until ``balance`` falls to ``level`` at ``rate`` EUR/s: 0 if already there,
    ``math.inf`` when nothing is spent."""
    if balance <= level:
        return 0.0
    if not rate > 0:  # also catches NaN, which must never turn into a time
        return math.inf
    seconds = float(balance - level) / rate
    return seconds if seconds >= 0 else 0.0


class _Rec(NamedTuple):
    """One kept sample with the running totals up to it (differences give any span's totals)."""

    t: float
    balance: Decimal
    spend: Decimal  # cumulative spend (drops, plus spend recovered from expected credits)
    covered: float  # cumulative seconds whose spend is known
    credit: Decimal  # cumulative credits
    drops: int  # cumulative number of gaps with spend


class _Undo(NamedTuple):
    """How to correct the latest add (a drop): the record before it, and the peaks it hid."""

    pre: _Rec
    rec: _Rec
    peak: tuple[float, float] | None  # the peak this drop pushed, if any
    hidden: tuple[tuple[float, float], ...]  # the lower peaks that push removed, newest first


class SpendTracker:
    """Incremental spend tracker: ``add`` each balance sample, ask for a ``forecast``.

    ``add`` and ``forecast`` are O(1) amortised; the backtest calls them tens of thousands of times.
    """

    def __init__(
        self,
        short_window: float = 300.0,
        long_window: float = 3600.0,
        *,
        max_samples: int = 10_000,
        expected_credit_ttl: float | None = None,
        old_spacing: float | None = None,
    ) -> None:
        if not 0 < short_window <= long_window:
            raise ValueError("need 0 < short_window <= long_window")
        if max_samples < 2:
            raise ValueError("max_samples must be at least 2")
        self.short_window = short_window
        self.long_window = long_window
        self._max_samples = max_samples
        self._old_spacing = old_spacing
        self._old_seen = -math.inf  # the newest record already considered for thinning
        # An expected credit that never shows (a top-up reflected very late) must not be matched
        # against an unrelated rise much later.
        self._expected_ttl = short_window if expected_credit_ttl is None else expected_credit_ttl
        self._long: deque[_Rec] = deque()
        self._short: deque[_Rec] = deque()
        # Sliding-window maximum of per-gap spend rates: (gap end time, rate), rates decreasing.
        self._peaks: deque[tuple[float, float]] = deque()
        self._burst: deque[_Rec] = deque()  # the records of the last PEAK_WINDOW seconds
        self._expected = _ZERO
        self._expected_since = 0.0
        self._expected_read = False  # a reading was added while a credit was expected
        self._last_credit: Credit | None = None
        self.lumps_total = _ZERO  # one-off debits kept out of the rate
        # The window rates of the newest record: each poll asks for the forecast before and
        # after adding its sample, so the "before" one is the previous poll's "after".
        self._rates_of: tuple[_Rec, float, float, tuple[float, float, float, float]] | None = None
        self.reverted_total = _ZERO  # EUR of drops the next reading took back (corrected)
        self._undo: _Undo | None = None  # how to correct the latest add, when it was a drop

    # --- input ----------------------------------------------------------------------------
    def note_expected_credit(self, amount: Decimal) -> None:
        """A top-up of ``amount`` was applied after the latest sample.

        Call it before ``add`` of the next sample. The first later sample that rises by at least
        half the expected total consumes it: the spend in that gap is ``expected - rise`` (so the
        credit step does not hide spend). Samples that do not rise leave it pending (the credit
        may lag); it lapses after ``expected_credit_ttl`` seconds. A zero or negative amount (an
        unknown one) is ignored: the step's gap then counts as of unknown spend.
        """
        if not (amount.is_finite() and amount > 0):
            return
        if self._expected_read:
            # A reading came since the last one was expected and did not show it: it was seen
            # (spend hid more than half of it) or never comes. Added to this one it would read
            # this credit's rise as a phantom spend of its whole amount.
            self._expected, self._expected_read = _ZERO, False
        if self._expected == 0:
            self._expected_since = self._long[-1].t if self._long else -math.inf
        self._expected += amount

    def add(self, sample: BalanceSample, *, lump: bool = False) -> Credit | None:
        """Record ``sample``; return the credit if the balance rose since the previous one.

        ``lump``: the drop into this sample is a one-off debit (``readings.ReadingJudge``), not
        a flow: the gap counts as of unknown spend, so the rate elsewhere stands in for it and
        the lump is neither extrapolated nor a peak."""
        t, balance = _checked(sample)
        if not self._long:
            self._push(_Rec(t, balance, _ZERO, 0.0, _ZERO, 0), merge=False)
            return None
        last = self._long[-1]
        t = max(t, last.t)  # a clock going backwards is treated as no time passing
        if self._expected > 0 and t - self._expected_since > self._expected_ttl:
            self._expected = _ZERO
        undo, self._undo = self._undo, None
        if undo is not None:
            level = self._taken_back_to(undo, t, balance)
            if level is not None and self._correct(undo, level):
                last = self._long[-1]
        dt = t - last.t
        delta = balance - last.balance
        spend, credit, known = _split_gap(delta, self._expected)
        if lump and delta < 0:
            spend, known = _ZERO, False
            self.lumps_total += -delta
        if known and credit > 0:
            self._expected = _ZERO  # consumed by this rise
        self._expected_read = self._expected > 0
        rec = _Rec(
            t=t,
            balance=balance,
            # Unchanged totals share the previous record's objects (a Decimal is ~100 bytes).
            spend=last.spend + spend if spend else last.spend,
            covered=last.covered + dt if known and dt else last.covered,
            credit=last.credit + credit if credit else last.credit,
            drops=last.drops + (1 if spend > 0 else 0),
        )
        merge = dt == 0
        pre = self._long[-1]
        self._push(rec, merge=merge)
        peak: tuple[float, float] | None = None
        hidden: tuple[tuple[float, float], ...] = ()
        if known and len(self._burst) >= 2:
            peak = (rec.t, self._burst_rate(rec.t))
            hidden = self._push_peak(*peak)
        if delta < 0 and spend > 0 and known and not merge:
            self._undo = _Undo(pre, rec, peak, hidden)  # the next reading may take it back
        if credit > 0:
            self._last_credit = Credit(t, credit)
            return self._last_credit
        return None

    def last_time(self) -> float | None:
        """Clock time of the newest sample, or None before the first."""
        return self._long[-1].t if self._long else None

    def last_balance(self) -> Decimal | None:
        return self._long[-1].balance if self._long else None

    def last_credit(self) -> Credit | None:
        """The most recent rise seen, kept even after it leaves the window."""
        return self._last_credit

    # --- output ---------------------------------------------------------------------------
    def forecast(self, now: float) -> Forecast | None:
        """The forecast as of the latest sample, or None before two samples."""
        if len(self._long) < 2:
            return None
        last = self._long[-1]
        rates = self._rates_of
        if (
            rates is not None
            and rates[0] is last
            and rates[1] == self.short_window
            and rates[2] == self.long_window
        ):
            rate_short, rate_long, covered_long, peak = rates[3]
        else:
            rate_short, _ = _window_rate(self._short, last.t - self.short_window)
            rate_long, covered_long = _window_rate(self._long, last.t - self.long_window)
            peak = max(self._peaks[0][1] if self._peaks else 0.0, rate_short, rate_long, 0.0)
            self._rates_of = (last, self.short_window, self.long_window,
                              (rate_short, rate_long, covered_long, peak))  # fmt: skip
        rate = max(rate_short, rate_long, 0.0)
        first = self._long[0]
        return Forecast(
            t=last.t,
            balance=last.balance,
            rate_short=rate_short,
            rate_long=rate_long,
            rate=rate,
            peak_rate=peak,
            time_to_exhaustion=time_to_level(last.balance, _ZERO, rate),
            confidence=self._confidence(rate_short, rate_long, covered_long, now - last.t),
            samples=len(self._long),
            spend_total=last.spend - first.spend,
            credits_total=last.credit - first.credit,
        )

    # --- internals ------------------------------------------------------------------------
    def _push(self, rec: _Rec, *, merge: bool) -> None:
        peak = min(PEAK_WINDOW, self.short_window)
        for window, dq in (
            (self.long_window, self._long),
            (self.short_window, self._short),
            (peak, self._burst),
        ):
            if merge and dq:
                dq.pop()
            dq.append(rec)
            boundary = rec.t - window
            # Keep exactly one record at or before the boundary: the start of the straddling gap.
            while len(dq) >= 2 and (dq[1].t <= boundary or len(dq) > self._max_samples):
                dq.popleft()
        horizon = rec.t - self.long_window
        while self._peaks and self._peaks[0][0] <= horizon:
            self._peaks.popleft()
        if self._old_spacing is not None:
            self._thin_old(self._old_spacing)

    def _thin_old(self, spacing: float) -> None:
        """Drop each record that has just left the short window when its neighbours are within
        ``spacing`` of each other. The short window is a suffix of the long one; the long
        window's first record (the start of the gap straddling its boundary) is always kept."""
        long = self._long
        seam = len(long) - len(self._short)  # long[seam] is the short window's first record
        j = seam - 1
        while j >= 1 and long[j].t > self._old_seen:
            j -= 1
        j += 1
        while 1 <= j < seam:
            self._old_seen = long[j].t
            if long[j + 1].t - long[j - 1].t <= spacing:
                del long[j]
                seam -= 1
            else:
                j += 1

    def _burst_rate(self, t_end: float) -> float:
        """The rate over the ``PEAK_WINDOW`` s ending at the newest record, ``t_end``.

        Seconds of unknown spend inside the window (a credit that hid its gap's spend, a lump)
        spend at the sustained rate when that is lower, as the rate elsewhere stands in for them
        in the windows' rates; they never raise a window. Left out, they would shrink it to its
        few known seconds — the per-gap rate the window exists to smooth: a poll lost just as a
        credit showed (a glitch, a failed read) left a 30-s window 2 s of spend, and one 1.4-EUR
        second read as a 0.7 EUR/s burst the headroom then bought five top-ups for."""
        boundary = t_end - min(PEAK_WINDOW, self.short_window)
        spend, covered = _window_totals(self._burst, boundary)
        if covered <= 0:
            known = max(spend, 0.0) / MIN_GAP if spend > 0 else 0.0
        else:
            known = max(spend, 0.0) / max(covered, MIN_GAP)
        unknown = t_end - max(boundary, self._burst[0].t) - max(covered, 0.0)
        if unknown <= 1e-9:
            return known
        sustained = max(
            _window_rate(self._short, t_end - self.short_window)[0],
            _window_rate(self._long, t_end - self.long_window)[0],
        )
        # Only ever lower: a quiet window is no burst whatever its unknown seconds held (and
        # the sustained rate is in the forecast's peak already, for as long as it lasts).
        filled = (max(spend, 0.0) + sustained * unknown) / max(covered + unknown, MIN_GAP)
        return min(known, filled)

    def _push_peak(self, t_end: float, rate: float) -> tuple[tuple[float, float], ...]:
        """Push a gap's window rate; return the peaks it superseded (newest first)."""
        hidden = []
        while self._peaks and self._peaks[-1][1] <= rate:
            hidden.append(self._peaks.pop())
        self._peaks.append((t_end, rate))
        return tuple(hidden)

    def _taken_back_to(self, undo: _Undo, t: float, balance: Decimal) -> Decimal | None:
        """The level a reading of ``balance`` at ``t`` proves for the drop into ``undo.rec``,
        or None when it does not take the drop back: a later reading, risen from it, that net
        of the credit expected (or of none) lands at least half-way back to the level before
        the drop and not above it. A rise at the drop's own instant is a credit landing,
        merged as ever. Without the credit, it stays expected for a later rise."""
        rise = balance - undo.rec.balance
        if t <= undo.rec.t or rise <= 0:
            return None
        expected = self._expected if rise >= self._expected * EXPECTED_MATCH_SHARE else _ZERO
        # With the credit expected in the rise; or without it, when the rise is more than that
        # credit (it was matched before it showed): landing on the level before the drop, the
        # rise is the drop taken back either way. A rise no larger than the credit is it.
        levels = (balance - expected, balance) if rise > expected else (balance - expected,)
        for level in levels:
            if (undo.pre.balance + undo.rec.balance) / 2 <= level <= undo.pre.balance:
                return level
        return None

    def _correct(self, undo: _Undo, level: Decimal) -> bool:
        """Correct the latest record (a drop taken back) to ``level``, its peak with it."""
        windows = (self._long, self._short, self._burst)
        if any(len(dq) < 2 or dq[-1] is not undo.rec or dq[-2] is not undo.pre for dq in windows):
            return False  # not as that add left it: nothing to take back safely
        if undo.peak is not None and (not self._peaks or self._peaks[-1] != undo.peak):
            return False
        spent = undo.pre.balance - level
        fixed = undo.rec._replace(
            balance=level,
            spend=undo.pre.spend + spent,
            drops=undo.pre.drops + (1 if spent > 0 else 0),
        )
        for dq in windows:
            dq[-1] = fixed
        if undo.peak is not None:
            self._peaks.pop()
            self._peaks.extend(reversed(undo.hidden))
            self._push_peak(fixed.t, self._burst_rate(fixed.t))
        self.reverted_total += undo.rec.spend - fixed.spend
        return True

    def _confidence(self, short: float, long: float, covered: float, stale: float) -> float:
        """0..1 from four factors, each 1 when that aspect is well backed.

        Gaps (>= 4 wanted), covered span (a short window's worth wanted), spend events (4 drops
        wanted: quantised sparse traffic stays low), windows agreeing (a burst halves it at
        most) and freshness (a sample older than the short window lowers it).
        """
        last = self._long[-1]
        gaps = min(1.0, (len(self._long) - 1) / 4)
        span = min(1.0, covered / self.short_window)
        drops = min(1.0, (1 + last.drops - self._long[0].drops) / 5)
        high = max(short, long)
        agree = 1.0 if high <= 0 else 0.5 + 0.5 * min(short, long) / high
        fresh = 1.0 if stale <= self.short_window else self.short_window / stale
        return max(0.0, min(1.0, gaps * span * drops * agree * fresh))


def _checked(sample: BalanceSample) -> tuple[float, Decimal]:
    t, balance = float(sample.t), sample.balance
    if not math.isfinite(t) or abs(t) > MAX_ABS_TIME:
        raise ValueError("sample time must be a finite clock reading")
    if not balance.is_finite() or abs(balance) > MAX_ABS_BALANCE:
        raise ValueError("sample balance must be a finite, plausible EUR amount")
    return t, balance


def _split_gap(delta: Decimal, expected: Decimal) -> tuple[Decimal, Decimal, bool]:
    """(spend, credit, spend_known) for one gap whose balance changed by ``delta``."""
    if delta <= 0:
        return -delta, _ZERO, True
    if expected > 0 and delta >= expected * EXPECTED_MATCH_SHARE:
        # The top-up landed: balance change = credit - spend, so spend = expected - rise.
        # A rise beyond the expectation is another credit (e.g. Vonage's own auto-reload).
        return max(_ZERO, expected - delta), max(delta, expected), True
    return _ZERO, delta, False


def _window_totals(dq: deque[_Rec], boundary: float) -> tuple[float, float]:
    """(EUR spent, covered seconds) over (boundary, latest], interpolating inside the first gap."""
    first, last = dq[0], dq[-1]
    spend = float(last.spend - first.spend)
    covered = last.covered - first.covered
    if first.t < boundary and len(dq) >= 2:
        second = dq[1]
        outside = (boundary - first.t) / (second.t - first.t)  # share of the gap before it
        spend -= outside * float(second.spend - first.spend)
        covered -= outside * (second.covered - first.covered)
    return spend, covered


def _window_rate(dq: deque[_Rec], boundary: float) -> tuple[float, float]:
    """(EUR/s, covered seconds) over (boundary, latest], interpolating inside the first gap."""
    spend, covered = _window_totals(dq, boundary)
    if covered <= 0:
        # Only unknown (credit) gaps or equal timestamps: spend per the minimum gap, not 0/0.
        return (max(spend, 0.0) / MIN_GAP, 0.0) if spend > 0 else (0.0, 0.0)
    return max(spend, 0.0) / max(covered, MIN_GAP), covered


def forecast(
    samples: Sequence[BalanceSample],
    now: float,
    *,
    short_window: float = 300.0,
    long_window: float = 3600.0,
) -> Forecast | None:
    """One-shot forecast of ``samples`` (oldest first) with the same code as ``SpendTracker``."""
    tracker = SpendTracker(short_window, long_window)
    for sample in samples:
        tracker.add(sample)
    return tracker.forecast(now)
