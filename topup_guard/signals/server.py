"""The signal server: senders post what Vonage told them; the guard's inbox gets it.

- ``POST /v1/signals/sms`` — an SMS API answer exactly as received (JSON, XML or form fields);
  ``?at=<unix seconds>`` says when it was produced (default: arrival).
- ``POST /v1/signals/balance`` — ``{"balance": "12.34", "at": 1764489600.5}``.
- ``POST /v1/signals/refusal`` — a Messages API 1070 error, a ``low-balance`` problem,
  ``{"code": "1070"}`` or ``{"status": "9"}``.

Each request is checked (token, size, shape) and answered at once: ``202`` when accepted, ``400``
with one line when the body is wrong, ``401`` without a valid token, ``413`` when too large, ``429``
when the hand-off queue is full. Accepted signals go through a bounded queue to a task that feeds
the ``SignalInbox``, so the request path never waits on the engine, and a flood costs at most
``queue_size`` small objects. Rejects are counted by reason and logged at most once a minute per
reason, never with the body.

HTTP is served on asyncio streams (``signals.wire``), like the probes (``probehttp``): three POST
routes need no web framework, and the guard stays without aiohttp's server half. Keep-alive and
``Expect: 100-continue`` are honoured; a request refused before its body was read is answered with
``Connection: close`` and its body drained for a moment, so the client reads the answer instead of
a reset. Every request must arrive within ``REQUEST_TIMEOUT`` seconds.

It is a separate server from the health port on purpose: probes must answer even while a
sender floods this one, and this one listens on loopback by default (``config.is_loopback``).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import time
from collections.abc import Callable
from urllib.parse import parse_qsl

from topup_guard import http11
from topup_guard.config import is_loopback
from topup_guard.errors import ConfigError
from topup_guard.signals import wire
from topup_guard.signals.inbox import Signal, SignalInbox, SignalReading
from topup_guard.signals.metrics import SignalInstruments
from topup_guard.signals.parse import (
    BadSignal,
    Parsed,
    Reason,
    parse_at,
    parse_balance,
    parse_refusal,
    parse_sms,
)

log = logging.getLogger("topup_guard.signals")
MAX_BODY_BYTES = 64 * 1024
"""A 256-part SMS answer is about 60 KiB of JSON; anything larger is not an answer."""
DEFAULT_QUEUE_SIZE = 1024
REJECT_LOG_INTERVAL_S = 60.0
REQUEST_TIMEOUT = 10.0
"""For each request, head and body (an idle keep-alive connection is closed after this long)."""
LINGER_S, LINGER_BYTES = 1.0, 1 << 20
"""How long and how much of an unread body is drained after an early answer, before closing."""
_ACCEPTED = wire.Answer.json(202, {"status": "accepted"})


def _sms(body: bytes, now: float) -> Parsed:
    return parse_sms(body)


def _balance(body: bytes, now: float) -> Parsed:
    return parse_balance(body, now)


def _refusal(body: bytes, now: float) -> Parsed:
    return parse_refusal(body)


ROUTES: dict[str, tuple[str, Callable[[bytes, float], Parsed]]] = {
    "/v1/signals/sms": ("sms", _sms),
    "/v1/signals/balance": ("balance", _balance),
    "/v1/signals/refusal": ("refusal", _refusal),
}


class _RejectLog:
    """One warning per reason per interval, with the count since the last one: a flood of
    garbage must not become a flood of log lines."""

    def __init__(self, interval: float, now: Callable[[], float] = time.monotonic) -> None:
        self._interval, self._now = interval, now
        self._last: dict[str, float] = {}
        self._since: dict[str, int] = {}

    def note(self, reason: Reason, detail: str) -> None:
        self._since[reason] = self._since.get(reason, 0) + 1
        now = self._now()
        last = self._last.get(reason)
        if last is not None and now - last < self._interval:
            return
        self._last[reason] = now
        count, self._since[reason] = self._since[reason], 0
        log.warning("signal_rejected", extra={"reason": reason, "detail": detail, "count": count})


class SignalServer:
    """Serves ``/v1/signals/*`` into ``inbox``. ``token=None`` is allowed on loopback only."""

    def __init__(
        self,
        inbox: SignalInbox,
        *,
        host: str = "127.0.0.1",
        port: int = 8081,
        token: str | None = None,
        instruments: SignalInstruments | None = None,
        wall: Callable[[], float] = time.time,
        queue_size: int = DEFAULT_QUEUE_SIZE,
        max_body: int = MAX_BODY_BYTES,
    ) -> None:
        if token is None and not is_loopback(host):
            # Settings refuse this already; kept here so no other caller can build it either.
            raise ConfigError(
                [f"TOPUP_GUARD_SIGNAL_TOKEN: required to listen on {host} (not loopback)"]
            )
        self.inbox, self.host, self.port = inbox, host, port
        self._expected = f"Bearer {token}".encode() if token else None
        # Without a token only loopback can post (checked above): the pod itself, trusted.
        self._trusted_without_token = token is None and is_loopback(host)
        self._instruments, self._wall, self._max_body = instruments, wall, max_body
        self._queue: asyncio.Queue[Signal] = asyncio.Queue(maxsize=queue_size)
        self._rejects = _RejectLog(REJECT_LOG_INTERVAL_S)
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._feeder: asyncio.Task[None] | None = None

    @property
    def queue_depth(self) -> int:
        """Accepted signals not yet handed to the inbox."""
        return self._queue.qsize()

    # --- lifecycle -------------------------------------------------------------------------------
    async def start(self) -> None:
        self._server = await asyncio.start_server(
            self._connection, self.host, self.port, limit=wire.MAX_HEAD
        )
        self.port = int(self._server.sockets[0].getsockname()[1])
        self._feeder = asyncio.create_task(self._feed(), name="signal-feeder")
        if self._instruments is not None:
            self._instruments.depth_source = lambda: self.queue_depth
        log.info(
            "signal_server_started",
            extra={"host": self.host, "port": self.port, "token": self._expected is not None},
        )

    async def stop(self) -> None:
        if self._server is not None:
            server, self._server = self._server, None
            server.close()
            for writer in list(self._writers):  # in 3.11 wait_closed does not wait for handlers
                writer.close()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(1.0):
                    await server.wait_closed()
        if self._feeder is not None:
            feeder, self._feeder = self._feeder, None
            feeder.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await feeder
        while not self._queue.empty():  # whatever was accepted still reaches the inbox
            self.inbox.offer(self._queue.get_nowait())
        if self._instruments is not None:
            self._instruments.depth_source = None

    async def _feed(self) -> None:
        while True:
            self.inbox.offer(await self._queue.get())

    # --- the connection: requests one after another until one side closes -----------------------
    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            while await self._one_request(reader, writer):
                pass
        except (TimeoutError, ConnectionError, asyncio.IncompleteReadError):
            pass  # a slow, vanished or cut-short client: nothing to answer
        finally:
            self._writers.discard(writer)
            await http11.close_quietly(writer)

    async def _one_request(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> bool:
        """Answer one request; True to read the next one on this connection."""
        head: wire.Head | None = None
        try:
            async with asyncio.timeout(REQUEST_TIMEOUT):
                head = await wire.read_head(reader)
                if head is None:
                    return False
                answer, read_all = await self._answer(head, reader, writer)
        except wire.BadRequest as exc:
            answer, read_all = self._reject("malformed", str(exc), 400), False
        except wire.BodyTooLarge:
            answer, read_all = self._too_large(), False
        except (TimeoutError, ConnectionError, asyncio.IncompleteReadError):
            raise
        except Exception:
            log.exception("signal_handler_failed", extra={"path": head.path if head else None})
            answer, read_all = wire.Answer.text(500, "internal error"), False
        keep = read_all and head is not None and head.keep_alive
        writer.write(answer.encode(close=not keep))
        await writer.drain()
        if not read_all:
            await self._linger(reader, writer)
        return keep

    @staticmethod
    async def _linger(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Drain what the client is still sending, so closing does not reset the answer away."""
        if writer.can_write_eof():
            writer.write_eof()
        with contextlib.suppress(TimeoutError, ConnectionError):
            async with asyncio.timeout(LINGER_S):
                drained = 0
                while drained < LINGER_BYTES and (data := await reader.read(65536)):
                    drained += len(data)

    # --- the request path ------------------------------------------------------------------------
    async def _answer(
        self, head: wire.Head, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> tuple[wire.Answer, bool]:
        """The answer, and whether the whole request (its body too) was read."""
        route = ROUTES.get(head.path)
        if route is None or head.method != "POST":
            early = (
                self._reject("not_found", "no such endpoint", 404)
                if route is None
                else self._reject("not_found", "use POST", 405, Allow="POST")
            )
            return early, await self._skip_body(head, reader)
        kind, parse = route
        trusted = self._authorized(head)
        if trusted is None:
            early = self._reject(
                "unauthorized",
                "a valid Authorization: Bearer token",
                401,
                **{"WWW-Authenticate": "Bearer"},
            )
            return early, await self._skip_body(head, reader)
        if (head.content_length or 0) > self._max_body:
            return self._too_large(), False
        if head.has_body and head.headers.get("expect", "").lower() == "100-continue":
            writer.write(wire.CONTINUE)
        body = await wire.read_body(reader, head, self._max_body)
        return self._take(kind, parse, body, head.query, trusted), True

    async def _skip_body(self, head: wire.Head, reader: asyncio.StreamReader) -> bool:
        """Read and drop a small declared body so the connection can go on; False: close it."""
        length = head.content_length
        if not head.has_body:
            return True
        if head.chunked or length is None or length > self._max_body or "expect" in head.headers:
            return False
        await reader.readexactly(length)
        return True

    def _take(
        self,
        kind: str,
        parse: Callable[[bytes, float], Parsed],
        body: bytes,
        query: str,
        trusted: bool,
    ) -> wire.Answer:
        now = self._wall()
        try:
            parsed = parse(body, now)
            query_at = next(
                (v for k, v in parse_qsl(query, keep_blank_values=True) if k == "at"), None
            )
            at = parse_at(query_at, now) if query_at is not None else None
        except BadSignal as exc:
            return self._reject(exc.reason, str(exc), 400)
        # The body's own time first, then ?at=, then arrival.
        default = at if at is not None else now
        readings = tuple(
            SignalReading(t if t is not None else default, b, trusted) for t, b in parsed.readings
        )
        try:
            self._queue.put_nowait(Signal(readings, parsed.refusals, parsed.successes))
        except asyncio.QueueFull:
            return self._reject(
                "queue_full", "too many signals waiting; retry later", 429, **{"Retry-After": "1"}
            )
        if self._instruments is not None:
            self._instruments.count_received(kind)
        return _ACCEPTED

    def _authorized(self, head: wire.Head) -> bool | None:
        """True: token valid (or loopback without a token). None: refuse the request."""
        if self._expected is None:
            return self._trusted_without_token
        # latin-1 gives back the bytes that were sent.
        got = head.headers.get("authorization", "").strip().encode("latin-1")
        # Constant time over the whole header, so a wrong token says nothing about its prefix.
        return True if hmac.compare_digest(got, self._expected) else None

    def _too_large(self) -> wire.Answer:
        return self._reject("too_large", f"body over {self._max_body} bytes", 413)

    def _reject(self, reason: Reason, detail: str, status: int, **headers: str) -> wire.Answer:
        if self._instruments is not None:
            self._instruments.count_rejected(reason)
        self._rejects.note(reason, detail)
        return wire.Answer.text(status, detail, **headers)


__all__ = ["DEFAULT_QUEUE_SIZE", "MAX_BODY_BYTES", "ROUTES", "SignalServer"]
