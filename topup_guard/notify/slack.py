"""``SlackNotifier``: an ``EventSink`` that posts to Slack without ever slowing the guard down.

``emit()`` renders the event and puts the message into a bounded queue, then returns; a worker
task posts messages one at a time. When Slack is slow or down the queue fills and new messages
are dropped, counted and logged: an alert lost is bad, a top-up delayed by an alert is worse.
``stop()`` drains what it can within its timeout and then cancels, so shutdown never hangs on a
dead Slack. Condition alerts are de-duplicated (``ConditionTracker``); dry-run decisions, which
repeat every poll while the balance stays low, are posted at most once per ``repeat`` seconds.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING

from topup_guard.clock import Clock, SystemClock
from topup_guard.config import Settings
from topup_guard.events import ConditionsChanged, Event, Outcome, TopUpFinished
from topup_guard.notify.conditions import ConditionTracker
from topup_guard.notify.messages import SlackMessage, render, topup

if TYPE_CHECKING:
    from topup_guard.notify.transport import Transport

# slack_sdk is imported only when Slack is configured (transport.py): ~5 MB less for everyone else.
SLACK_API_URL = "https://slack.com/api/"

log = logging.getLogger("topup_guard.notify")

Hook = Callable[[str], None]  # called with the message kind, for telemetry counters
_SEEN_TOPUPS = 256  # (attempt_id, outcome) pairs remembered to post each top-up once
_DROP_LOG_EVERY = 60.0  # seconds between two "dropped" warnings while Slack stays unreachable


class SlackNotifier:
    """Posts guard events to Slack. ``transport=None`` makes a no-op notifier (Slack not set up).

    Counters ``sent``, ``failed`` and ``dropped`` are plain attributes; ``on_sent``,
    ``on_failed`` and ``on_dropped`` are called with the message kind so telemetry can count too.
    """

    def __init__(
        self,
        transport: Transport | None,
        *,
        clock: Clock | None = None,
        repeat: float = 3600.0,
        queue_size: int = 100,
        message_timeout: float = 30.0,
        secrets: tuple[str, ...] = (),
        on_sent: Hook | None = None,
        on_failed: Hook | None = None,
        on_dropped: Hook | None = None,
    ) -> None:
        self._transport = transport
        self._clock: Clock = clock or SystemClock()
        self._repeat = repeat
        self._message_timeout = message_timeout
        self._secrets = tuple(s for s in secrets if s)
        self.on_sent, self.on_failed, self.on_dropped = on_sent, on_failed, on_dropped
        self._queue: asyncio.Queue[SlackMessage] = asyncio.Queue(maxsize=queue_size)
        self._conditions = ConditionTracker(repeat)
        self._seen_topups: deque[tuple[int, Outcome]] = deque(maxlen=_SEEN_TOPUPS)
        self._last_dry_run: float | None = None
        self._dry_runs_suppressed = 0
        self._last_drop_log: float | None = None
        self._drops_unlogged = 0
        self._worker: asyncio.Task[None] | None = None
        self._closed = False
        self.sent = 0
        self.failed = 0
        self.dropped = 0

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        *,
        clock: Clock | None = None,
        api_base_url: str = SLACK_API_URL,
        message_timeout: float = 30.0,
        request_timeout: float = 10.0,
        on_sent: Hook | None = None,
        on_failed: Hook | None = None,
        on_dropped: Hook | None = None,
    ) -> SlackNotifier:
        """The webhook if set, else the bot token and channel, else a no-op notifier."""
        transport: Transport | None = None
        secrets: tuple[str, ...] = ()
        if settings.slack_webhook_url is not None:
            from topup_guard.notify.transport import WebhookTransport

            url = settings.secret("slack_webhook_url")
            transport = WebhookTransport(url, request_timeout=request_timeout)
            secrets = (url, url.split("/services/", 1)[-1])
        elif settings.slack_token is not None and settings.slack_channel:
            from topup_guard.notify.transport import WebApiTransport

            token = settings.secret("slack_token")
            transport = WebApiTransport(
                token,
                settings.slack_channel,
                base_url=api_base_url,
                request_timeout=request_timeout,
            )
            secrets = (token,)
        return cls(
            transport,
            clock=clock,
            repeat=settings.slack_repeat,
            queue_size=settings.slack_queue_size,
            message_timeout=message_timeout,
            secrets=secrets,
            on_sent=on_sent,
            on_failed=on_failed,
            on_dropped=on_dropped,
        )

    @property
    def enabled(self) -> bool:
        return self._transport is not None

    @property
    def pending(self) -> int:
        return self._queue.qsize()

    # --- EventSink -----------------------------------------------------------------------

    def emit(self, event: Event) -> None:
        """Queue the messages for ``event`` and return at once; never raises."""
        if self._transport is None:
            return
        try:
            for message in self._messages_for(event):
                self._enqueue(message)
        except Exception:  # a notification bug must never reach the engine
            log.exception("slack_render_failed", extra={"event": type(event).__name__})

    def _messages_for(self, event: Event) -> list[SlackMessage]:
        if isinstance(event, ConditionsChanged):
            return self._conditions.update(event.active, self._clock.now(), event.wall)
        if isinstance(event, TopUpFinished):
            return self._topup_messages(event)
        message = render(event)
        return [message] if message is not None else []

    def _topup_messages(self, event: TopUpFinished) -> list[SlackMessage]:
        if event.outcome is Outcome.DRY_RUN:
            # In dry run the balance never rises, so the same decision comes back every poll.
            now = self._clock.now()
            if self._last_dry_run is not None and now - self._last_dry_run < self._repeat:
                self._dry_runs_suppressed += 1
                return []
            suppressed, self._dry_runs_suppressed = self._dry_runs_suppressed, 0
            self._last_dry_run = now
            return [topup(event, suppressed)]
        key = (event.attempt_id, event.outcome)
        if key in self._seen_topups:  # one top-up, one message, even if reported twice
            return []
        self._seen_topups.append(key)
        return [topup(event)]

    def _enqueue(self, message: SlackMessage) -> None:
        if self._closed:
            self._count_drop(message, "stopped")
            return
        try:
            self._queue.put_nowait(message)
        except asyncio.QueueFull:
            self._count_drop(message, "queue_full")

    def _count_drop(self, message: SlackMessage, why: str) -> None:
        self.dropped += 1
        self._call(self.on_dropped, message.kind)
        # One warning per minute at most: a dead Slack must not also flood the logs.
        now = self._clock.now()
        self._drops_unlogged += 1
        if self._last_drop_log is None or now - self._last_drop_log >= _DROP_LOG_EVERY:
            log.warning(
                "slack_message_dropped",
                extra={
                    "kind": message.kind,
                    "why": why,
                    "dropped_since_last_log": self._drops_unlogged,
                    "dropped_total": self.dropped,
                },
            )
            self._last_drop_log = now
            self._drops_unlogged = 0

    # --- lifecycle -----------------------------------------------------------------------

    async def start(self) -> None:
        if self._transport is None:
            log.info("slack_disabled")
            return
        if self._worker is None:
            self._worker = asyncio.create_task(self._run(), name="slack-notifier")

    async def drain(self, timeout: float) -> bool:  # noqa: ASYNC109 - mirrors stop()
        """Wait until every queued message was posted (or given up); False on timeout."""
        try:
            await asyncio.wait_for(self._queue.join(), timeout=timeout)
        except TimeoutError:
            return False
        return True

    async def stop(self, timeout: float = 5) -> None:  # noqa: ASYNC109 - contract: stop(timeout)
        """Post what is queued within ``timeout`` seconds, then give up on the rest."""
        self._closed = True
        worker, self._worker = self._worker, None
        if worker is None:
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        reserve = min(0.5, timeout * 0.1)  # time kept for the cancellation to finish
        await self.drain(max(0.0, timeout - reserve))
        unsent = self._queue.qsize()
        worker.cancel()
        await asyncio.wait({worker}, timeout=max(0.01, deadline - loop.time()))
        if unsent:
            log.warning("slack_stop_timeout", extra={"unsent": unsent})

    async def _run(self) -> None:
        while True:
            message = await self._queue.get()
            try:
                await self._send(message)
            finally:
                self._queue.task_done()

    async def _send(self, message: SlackMessage) -> None:
        assert self._transport is not None  # the worker only runs with a transport
        try:
            async with asyncio.timeout(self._message_timeout):
                await self._transport.post(message)
        except TimeoutError:
            self._fail(message, f"no answer within {self._message_timeout:g} s")
        except Exception as exc:  # any Slack failure is counted, never raised
            self._fail(message, f"{type(exc).__name__}: {exc}")
        else:
            self.sent += 1
            self._call(self.on_sent, message.kind)

    def _fail(self, message: SlackMessage, error: str) -> None:
        self.failed += 1
        log.warning("slack_send_failed", extra={"kind": message.kind, "error": self._scrub(error)})
        self._call(self.on_failed, message.kind)

    def _scrub(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "[redacted]")
        return text[:300]

    @staticmethod
    def _call(hook: Hook | None, kind: str) -> None:
        if hook is None:
            return
        try:
            hook(kind)
        except Exception:  # a broken metrics hook must not stop notifications
            log.exception("slack_hook_failed")
