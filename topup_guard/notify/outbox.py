"""One channel's bounded queue and the worker that empties it: what keeps a slow channel harmless.

``put`` never waits: when the channel is slow or down its queue fills and new notes are dropped,
counted and logged (once a minute at most) — an alert lost is bad, a top-up delayed by an alert is
worse. Each note gets ``message_timeout`` seconds, retries included; ``stop`` drains what it can
within its timeout, then cancels, so shutdown never hangs on a dead channel. Each channel has its
own outbox, so a dead webhook does not hold back Slack.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from topup_guard.clock import Clock
from topup_guard.notify.channels import Channel
from topup_guard.notify.note import Note

log = logging.getLogger("topup_guard.notify")

Count = Callable[[str, str, str], None]  # (channel, result, note kind): sent | failed | dropped
_DROP_LOG_EVERY = 60.0  # seconds between two "dropped" warnings while a channel stays down


class Outbox:
    def __init__(
        self,
        channel: Channel,
        *,
        clock: Clock,
        queue_size: int = 100,
        message_timeout: float = 30.0,
        count: Count | None = None,
    ) -> None:
        self.channel = channel
        self._clock = clock
        self._message_timeout = message_timeout
        self._count = count
        self._queue: asyncio.Queue[Note] = asyncio.Queue(maxsize=queue_size)
        self._worker: asyncio.Task[None] | None = None
        self._closed = False
        self._last_drop_log: float | None = None
        self._drops_unlogged = 0
        self.sent = 0
        self.failed = 0
        self.dropped = 0

    @property
    def pending(self) -> int:
        return self._queue.qsize()

    def put(self, note: Note) -> None:
        if self._closed:
            self._drop(note, "stopped")
            return
        try:
            self._queue.put_nowait(note)
        except asyncio.QueueFull:
            self._drop(note, "queue_full")

    def _drop(self, note: Note, why: str) -> None:
        self.dropped += 1
        self._counted("dropped", note)
        now = self._clock.now()
        self._drops_unlogged += 1
        if self._last_drop_log is None or now - self._last_drop_log >= _DROP_LOG_EVERY:
            log.warning(
                "notification_dropped",
                extra={
                    "channel": self.channel.name,
                    "kind": note.kind,
                    "why": why,
                    "dropped_since_last_log": self._drops_unlogged,
                    "dropped_total": self.dropped,
                },
            )
            self._last_drop_log = now
            self._drops_unlogged = 0

    # --- lifecycle -----------------------------------------------------------------------
    def start(self) -> None:
        if self._worker is None:
            self._worker = asyncio.create_task(self._run(), name=f"notify-{self.channel.name}")

    async def drain(self, timeout: float) -> bool:  # noqa: ASYNC109 - mirrors stop()
        """Wait until every queued note was sent (or given up); False on timeout."""
        try:
            await asyncio.wait_for(self._queue.join(), timeout=timeout)
        except TimeoutError:
            return False
        return True

    async def stop(self, timeout: float) -> None:  # noqa: ASYNC109 - contract: stop(timeout)
        self._closed = True
        worker, self._worker = self._worker, None
        if worker is not None:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + timeout
            reserve = min(0.5, timeout * 0.1)  # time kept for the cancellation to finish
            await self.drain(max(0.0, timeout - reserve))
            unsent = self._queue.qsize()
            worker.cancel()
            await asyncio.wait({worker}, timeout=max(0.01, deadline - loop.time()))
            if unsent:
                log.warning(
                    "notification_stop_timeout",
                    extra={"channel": self.channel.name, "unsent": unsent},
                )
        try:
            await asyncio.wait_for(self.channel.aclose(), timeout=1.0)
        except Exception:  # closing connections is best effort
            log.debug("notification_close_failed", extra={"channel": self.channel.name})

    async def _run(self) -> None:
        while True:
            note = await self._queue.get()
            try:
                await self._send(note)
            finally:
                self._queue.task_done()

    async def _send(self, note: Note) -> None:
        try:
            async with asyncio.timeout(self._message_timeout):
                await self.channel.send(note)
        except TimeoutError:
            self._fail(note, f"no answer within {self._message_timeout:g} s")
        except Exception as exc:  # any channel failure is counted, never raised
            self._fail(note, f"{type(exc).__name__}: {exc}")
        else:
            self.sent += 1
            self._counted("sent", note)

    def _fail(self, note: Note, error: str) -> None:
        self.failed += 1
        log.warning(
            "notification_send_failed",
            extra={"channel": self.channel.name, "kind": note.kind, "error": self._scrub(error)},
        )
        self._counted("failed", note)

    def _scrub(self, text: str) -> str:
        for secret in self.channel.secrets:
            text = text.replace(secret, "[redacted]")
        return text[:300]

    def _counted(self, result: str, note: Note) -> None:
        if self._count is None:
            return
        try:
            self._count(self.channel.name, result, note.kind)
        except Exception:  # a broken metrics hook must not stop notifications
            log.exception("notification_hook_failed")
