"""The signal server (aiohttp): senders post what Vonage told them; the guard's inbox gets it.

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

It is a separate server from the health port on purpose: probes must answer even while a
sender floods this one, and this one listens on loopback by default (``config.is_loopback``).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import time
from collections.abc import Awaitable, Callable

from aiohttp import web

from topup_guard.config import is_loopback
from topup_guard.errors import ConfigError
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
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


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
        self._runner: web.AppRunner | None = None
        self._feeder: asyncio.Task[None] | None = None

    @property
    def queue_depth(self) -> int:
        """Accepted signals not yet handed to the inbox."""
        return self._queue.qsize()

    # --- lifecycle -------------------------------------------------------------------------------
    def build_app(self) -> web.Application:
        app = web.Application(client_max_size=self._max_body, middlewares=[self._unknown_paths])
        app.router.add_post("/v1/signals/sms", self._route("sms", self._sms))
        app.router.add_post("/v1/signals/balance", self._route("balance", self._balance))
        app.router.add_post("/v1/signals/refusal", self._route("refusal", self._refusal))
        return app

    async def start(self) -> None:
        runner = web.AppRunner(
            self.build_app(), access_log=None, handle_signals=False, shutdown_timeout=1.0
        )
        await runner.setup()
        try:
            await web.TCPSite(runner, self.host, self.port).start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        self.port = int(runner.addresses[0][1])
        self._feeder = asyncio.create_task(self._feed(), name="signal-feeder")
        if self._instruments is not None:
            self._instruments.depth_source = lambda: self.queue_depth
        log.info(
            "signal_server_started",
            extra={"host": self.host, "port": self.port, "token": self._expected is not None},
        )

    async def stop(self) -> None:
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()
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

    # --- the request path ------------------------------------------------------------------------
    def _route(self, kind: str, parse: Callable[[bytes, float], Parsed]) -> Handler:
        async def handle(request: web.Request) -> web.StreamResponse:
            trusted = self._authorized(request)
            if trusted is None:
                response = self._reject("unauthorized", "a valid Authorization: Bearer token", 401)
                response.headers["WWW-Authenticate"] = "Bearer"
                return response
            if (request.content_length or 0) > self._max_body:
                return self._reject("too_large", f"body over {self._max_body} bytes", 413)
            try:
                body = await request.read()
            except web.HTTPRequestEntityTooLarge:
                return self._reject("too_large", f"body over {self._max_body} bytes", 413)
            now = self._wall()
            try:
                parsed = parse(body, now)
                query_at = request.query.get("at")
                at = parse_at(query_at, now) if query_at is not None else None
            except BadSignal as exc:
                return self._reject(exc.reason, str(exc), 400)
            # The body's own time first, then ?at=, then arrival.
            default = at if at is not None else now
            readings = tuple(
                SignalReading(t if t is not None else default, b, trusted)
                for t, b in parsed.readings
            )
            signal = Signal(readings, parsed.refusals, parsed.successes)
            try:
                self._queue.put_nowait(signal)
            except asyncio.QueueFull:
                response = self._reject("queue_full", "too many signals waiting; retry later", 429)
                response.headers["Retry-After"] = "1"
                return response
            if self._instruments is not None:
                self._instruments.count_received(kind)
            return web.json_response({"status": "accepted"}, status=202)

        return handle

    @staticmethod
    def _sms(body: bytes, now: float) -> Parsed:
        return parse_sms(body)

    @staticmethod
    def _balance(body: bytes, now: float) -> Parsed:
        return parse_balance(body, now)

    @staticmethod
    def _refusal(body: bytes, now: float) -> Parsed:
        return parse_refusal(body)

    def _authorized(self, request: web.Request) -> bool | None:
        """True: token valid (or loopback without a token). None: refuse the request."""
        if self._expected is None:
            return self._trusted_without_token
        got = request.headers.get("Authorization", "").strip().encode("utf-8", "replace")
        # Constant time over the whole header, so a wrong token says nothing about its prefix.
        return True if hmac.compare_digest(got, self._expected) else None

    def _reject(self, reason: Reason, detail: str, status: int) -> web.Response:
        if self._instruments is not None:
            self._instruments.count_rejected(reason)
        self._rejects.note(reason, detail)
        return web.Response(text=detail + "\n", status=status, content_type="text/plain")

    @web.middleware
    async def _unknown_paths(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except (web.HTTPNotFound, web.HTTPMethodNotAllowed) as exc:
            what = "no such endpoint" if exc.status == 404 else "use POST"
            return self._reject("not_found", what, exc.status)


__all__ = ["DEFAULT_QUEUE_SIZE", "MAX_BODY_BYTES", "SignalServer"]
