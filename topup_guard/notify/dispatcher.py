"""``Dispatcher``: the one ``EventSink`` for notifications, whatever channels are configured.

It decides once what is worth saying and hands the same notes to every channel's outbox:
- **dedup**: one message per top-up even if reported twice; condition snapshots turned into
  groups by ``IncidentTracker`` (one cause, one message; a snapshot repeated says nothing);
- **throttling**: alerts wait ``group_wait`` for the rest of their cause, reminders come every
  ``repeat`` seconds, dry-run decisions (which repeat every poll) at most once per ``repeat``;
- **drop accounting**: per channel, in each ``Outbox``.
``emit`` renders and queues, then returns: it never waits for a channel and never raises. A timer
(``loop.call_later``) sends a waiting group when its time comes even if no event arrives.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Sequence

from topup_guard.clock import Clock, SystemClock
from topup_guard.events import (
    ConditionsChanged,
    Event,
    Outcome,
    Started,
    Stopped,
    TopUpFinished,
    TransferFinished,
)
from topup_guard.notify import fleet_messages, messages
from topup_guard.notify.channels import Channel
from topup_guard.notify.incident_text import incident
from topup_guard.notify.incidents import IncidentTracker
from topup_guard.notify.note import Note, Scope
from topup_guard.notify.outbox import Count, Outbox

log = logging.getLogger("topup_guard.notify")

_SEEN_TOPUPS = 256  # (attempt_id, outcome) pairs remembered to post each top-up once


class Dispatcher:
    def __init__(
        self,
        channels: Sequence[Channel],
        *,
        scope: Scope,
        clock: Clock | None = None,
        repeat: float = 3600.0,
        group_wait: float = 30.0,
        queue_size: int = 100,
        message_timeout: float = 30.0,
        count: Count | None = None,
    ) -> None:
        self._clock: Clock = clock or SystemClock()
        self.scope = scope
        self._repeat = repeat
        self.outboxes = [
            Outbox(
                ch,
                clock=self._clock,
                queue_size=queue_size,
                message_timeout=message_timeout,
                count=count,
            )
            for ch in channels
        ]
        self._tracker = IncidentTracker(repeat, group_wait)
        self._seen_topups: deque[tuple[int, Outcome]] = deque(maxlen=_SEEN_TOPUPS)
        self._seen_transfers: deque[tuple[int, str]] = deque(maxlen=_SEEN_TOPUPS)
        self._last_dry_run: float | None = None
        self._dry_runs_suppressed = 0
        self._timer: asyncio.TimerHandle | None = None
        self._started = False

    @property
    def enabled(self) -> bool:
        return bool(self.outboxes)

    @property
    def channels(self) -> list[str]:
        return [o.channel.name for o in self.outboxes]

    def outbox(self, name: str) -> Outbox:
        return next(o for o in self.outboxes if o.channel.name == name)

    @property
    def sent(self) -> int:
        return sum(o.sent for o in self.outboxes)

    @property
    def failed(self) -> int:
        return sum(o.failed for o in self.outboxes)

    @property
    def dropped(self) -> int:
        return sum(o.dropped for o in self.outboxes)

    @property
    def pending(self) -> int:
        return sum(o.pending for o in self.outboxes)

    # --- EventSink -----------------------------------------------------------------------
    def emit(self, event: Event) -> None:
        """Queue the notes for ``event`` and return at once; never raises."""
        if not self.outboxes:
            return
        try:
            for note in self._notes_for(event):
                self._dispatch(note)
            self._arm_timer()
        except Exception:  # a notification bug must never reach the engine
            log.exception("notification_render_failed", extra={"event": type(event).__name__})

    def _notes_for(self, event: Event) -> list[Note]:
        now = self._clock.now()
        if isinstance(event, Started):
            return [messages.started(event, self.scope)]
        if isinstance(event, Stopped):  # say what is pending before saying goodbye
            return [*self._flush(now, force=True), messages.stopped(event, self.scope)]
        if isinstance(event, ConditionsChanged):
            self._tracker.observe(event, now)
        elif isinstance(event, TopUpFinished):
            note = self._topup(event, now)
            if note is not None:
                return [note, *self._flush(now)]
        elif isinstance(event, TransferFinished):
            key = (event.transfer_id, event.state)
            told = fleet_messages.transfer(event, self.scope)
            if told is not None and key not in self._seen_transfers:
                self._seen_transfers.append(key)
                return [told, *self._flush(now)]
        return self._flush(now)

    def _topup(self, event: TopUpFinished, now: float) -> Note | None:
        if event.outcome is Outcome.DRY_RUN:
            # In dry run the balance never rises, so the same decision comes back every poll.
            if self._last_dry_run is not None and now - self._last_dry_run < self._repeat:
                self._dry_runs_suppressed += 1
                return None
            suppressed, self._dry_runs_suppressed = self._dry_runs_suppressed, 0
            self._last_dry_run = now
            return messages.topup(event, self.scope, suppressed)
        key = (event.attempt_id, event.outcome)
        if key in self._seen_topups:  # one top-up, one message, even if reported twice
            return None
        self._seen_topups.append(key)
        if event.outcome is Outcome.SUCCEEDED:
            return messages.topup(event, self.scope)
        self._tracker.add_topup(event, now)  # told with the group it leads to
        return None

    def _flush(self, now: float, *, force: bool = False) -> list[Note]:
        due = self._tracker.due_at
        if not force and (due is None or now < due) and not self._tracker.repeat_due(now):
            return []
        flushed = self._tracker.flush(now, force=force)
        # Top-ups first: they happened before the conditions they led to.
        notes = [messages.topups_not_done(flushed.topups, self.scope)] if flushed.topups else []
        return notes + [incident(change, self.scope) for change in flushed.changes]

    def _dispatch(self, note: Note) -> None:
        for outbox in self.outboxes:
            if outbox.channel.accepts(note):
                outbox.put(note)

    # --- the timer that sends a waiting group without a new event --------------------------
    def _arm_timer(self) -> None:
        due = self._tracker.due_at
        if due is None or self._timer is not None or not self._started:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # emitted outside a loop (a synchronous test): events drive it
            return
        self._timer = loop.call_later(max(0.0, due - self._clock.now()) + 0.01, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        try:
            for note in self._flush(self._clock.now()):
                self._dispatch(note)
        except Exception:
            log.exception("notification_render_failed", extra={"event": "timer"})
        self._arm_timer()

    # --- lifecycle -----------------------------------------------------------------------
    async def start(self) -> None:
        if not self.outboxes:
            log.info("notifications_disabled")
            return
        log.info("notifications_enabled", extra={"channels": self.channels})
        self._started = True
        for outbox in self.outboxes:
            outbox.start()

    async def drain(self, timeout: float) -> bool:  # noqa: ASYNC109 - mirrors stop()
        """Wait until every outbox has sent (or given up on) what it holds; False on timeout."""
        results = await asyncio.gather(*(o.drain(timeout) for o in self.outboxes))
        return all(results)

    async def stop(self, timeout: float = 5) -> None:  # noqa: ASYNC109 - contract: stop(timeout)
        """Send what is pending within ``timeout`` seconds (all channels at once), then give up."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._started = False
        try:
            for note in self._flush(self._clock.now(), force=True):
                self._dispatch(note)
        except Exception:
            log.exception("notification_render_failed", extra={"event": "stop"})
        await asyncio.gather(*(o.stop(timeout) for o in self.outboxes))
