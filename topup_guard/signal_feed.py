"""Sender signals into the forecast: balance claims in, earlier looks out. Never money.

What a sender forwards (``signals/``) is a *claim* (``send-path-signal.md`` §6): it may make the
guard look sooner — a refusal, or a forecast that now says a top-up is due, brings the next
``get-balance`` forward — but a top-up is decided only on that read, and credits are settled by
``get-balance`` readings only. So a signal reading feeds the spend forecast and nothing else:
drops only (a rise is a credit, which is the poll's business), time-ordered (several sender
replicas answer out of order: a claim older than what the forecast already holds is dropped), and
plausible (the same bound as polled readings).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from topup_guard.clock import Clock
from topup_guard.model import BalanceSample
from topup_guard.policy.forecast import SpendTracker
from topup_guard.signals.inbox import SignalInbox

# A claimed rise smaller than this is rounding between two snapshots, not a credit: still a drop.
_RISE_TOLERANCE = Decimal("0.01")


@dataclass(frozen=True, slots=True)
class SignalNews:
    fed: int  # readings that entered the forecast
    dropped: int  # stale, rising or implausible readings
    refusals: int
    successes: int


class SignalFeed:
    def __init__(self, inbox: SignalInbox, clock: Clock, max_balance: Decimal) -> None:
        self.inbox = inbox
        self._clock = clock
        self._max = max_balance
        self.last_fed_at: float | None = None  # clock time of the newest reading fed
        self.fed_total = 0
        self.dropped_total = 0

    def flowing(self, within: float) -> bool:
        """Readings arrived within the last ``within`` seconds."""
        return self.last_fed_at is not None and self._clock.now() - self.last_fed_at <= within

    def take(self, tracker: SpendTracker, last_polled: BalanceSample | None) -> SignalNews:
        """Drain the inbox into ``tracker``; ``last_polled`` is the newest get-balance reading."""
        batch = self.inbox.drain()
        now, wall = self._clock.now(), self._clock.wall()
        fed = dropped = 0
        newest_t = tracker.last_time()
        level = tracker.last_balance()
        for r in sorted(batch.readings, key=lambda r: r.at_wall):
            t = now - max(0.0, wall - r.at_wall)
            value = r.balance
            stale = newest_t is not None and t <= newest_t
            rising = level is not None and value > level + _RISE_TOLERANCE
            if stale or rising or not value.is_finite() or abs(value) > self._max:
                dropped += 1
                continue
            tracker.add(BalanceSample(t, value))
            newest_t, level = t, value
            fed += 1
            self.last_fed_at = now
        self.fed_total += fed
        self.dropped_total += dropped
        return SignalNews(fed, dropped, batch.refusals, batch.successes)
