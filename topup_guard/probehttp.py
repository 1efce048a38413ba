"""A minimal HTTP/1.1 server for the probes: GET or HEAD of fixed paths, one request a connection.

The probe and metrics endpoints need none of a web framework: no bodies, no routing patterns, no
keep-alive (kubelet opens a connection per probe; Prometheus reconnects per scrape at no real
cost). Serving them with ``asyncio.start_server`` keeps aiohttp's server half (``aiohttp.web``:
about 1.2 MB and 15 ms of start-up) out of the guard, which uses aiohttp as a client only.

Bounded against slow or hostile clients: the request head must arrive within
``REQUEST_TIMEOUT`` seconds and ``MAX_HEAD`` bytes, else the connection is closed unanswered.
A handler that raises answers 500 (logged), never takes the server down.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from http import HTTPStatus
from urllib.parse import urlsplit

from topup_guard import http11

log = logging.getLogger("topup_guard.health")

REQUEST_TIMEOUT = 5.0
MAX_HEAD = 8192
_TOO_LONG = asyncio.LimitOverrunError


@dataclass(frozen=True, slots=True)
class Reply:
    status: int
    content_type: str
    body: bytes


Handler = Callable[[], Reply]


def _reply(status: int, text: str) -> Reply:
    return Reply(status, "text/plain; charset=utf-8", text.encode())


def respond(routes: Mapping[str, Handler], head: bytes) -> tuple[Reply, bool]:
    """The reply to one request head, and whether to send its body (False for HEAD)."""
    request_line = head.split(b"\r\n", 1)[0].decode("latin-1")
    parts = request_line.split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        return _reply(400, "bad request"), True
    method, target = parts[0], parts[1]
    handler = routes.get(urlsplit(target).path)
    if handler is None:
        return _reply(404, "not found"), method != "HEAD"
    if method not in ("GET", "HEAD"):
        return _reply(405, "method not allowed"), True
    try:
        return handler(), method == "GET"
    except Exception:
        log.exception("health_handler_failed", extra={"path": urlsplit(target).path})
        return _reply(500, "internal error"), method == "GET"


def encode(reply: Reply, *, with_body: bool) -> bytes:
    reason = HTTPStatus(reply.status).phrase
    head = (
        f"HTTP/1.1 {reply.status} {reason}\r\n"
        f"Content-Type: {reply.content_type}\r\n"
        f"Content-Length: {len(reply.body)}\r\n"
        "Connection: close\r\n\r\n"
    )
    return head.encode("latin-1") + (reply.body if with_body else b"")


class ProbeServer:
    """Serves ``routes`` (path -> handler) on ``host:port`` until ``stop``."""

    def __init__(self, routes: Mapping[str, Handler]) -> None:
        self._routes = dict(routes)
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self, host: str, port: int) -> int:
        """Listen; returns the bound port (``port`` 0 picks a free one)."""
        self._server = await asyncio.start_server(self._handle, host, port, limit=MAX_HEAD)
        bound: int = self._server.sockets[0].getsockname()[1]
        return bound

    async def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        for writer in list(self._writers):  # in 3.11 wait_closed does not wait for handlers
            writer.close()
        await server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            async with asyncio.timeout(REQUEST_TIMEOUT):
                head = await reader.readuntil(b"\r\n\r\n")
                reply, with_body = respond(self._routes, head)
                writer.write(encode(reply, with_body=with_body))
                await writer.drain()
        except (TimeoutError, ConnectionError, asyncio.IncompleteReadError, _TOO_LONG):
            pass  # a slow, oversized or vanished request: closed unanswered
        finally:
            self._writers.discard(writer)
            await http11.close_quietly(writer)
