"""HTTP/1.1 on asyncio streams for the signal server: read one request head and a bounded body.

The signal endpoints need a sliver of HTTP: a request line, a few headers, a body of at most
64 KiB (``Content-Length`` or chunked), keep-alive, and ``Expect: 100-continue``. This is that
sliver, so the guard does not load aiohttp's server half (``aiohttp.web``: about 3.5 MB resident
and a dozen modules) for three POST routes. What is not understood is refused, never guessed:
a head over ``MAX_HEAD`` bytes or with a malformed line, a ``Transfer-Encoding`` other than
``chunked``, both ``Content-Length`` and ``Transfer-Encoding`` (the request-smuggling shape),
two different lengths. Bytes are decoded as latin-1, so every header value maps back to the bytes
that were sent (the token compare is over those bytes).
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from http import HTTPStatus

from topup_guard import http11

MAX_HEAD = 16 * 1024
"""Request line and headers together (aiohttp allows 8 KiB a line); longer is refused."""


# The request cannot be read as HTTP/1.1: answered 400 (one line) and the connection closed.
BadRequest = http11.Malformed
# The body is over the limit: answered 413 and the connection closed.
BodyTooLarge = http11.TooLarge


@dataclass(frozen=True, slots=True)
class Head:
    """A parsed request head. Header names are lower case; the first of repeated names wins."""

    method: str
    target: str
    version: str
    headers: dict[str, str]

    @property
    def path(self) -> str:
        return self.target.split("?", 1)[0]

    @property
    def query(self) -> str:
        return self.target.split("?", 1)[1] if "?" in self.target else ""

    @property
    def keep_alive(self) -> bool:
        connection = self.headers.get("connection", "").lower()
        if self.version == "HTTP/1.0":
            return connection == "keep-alive"
        return connection != "close"

    @property
    def chunked(self) -> bool:
        return "transfer-encoding" in self.headers

    @property
    def content_length(self) -> int | None:
        """The declared length; None for chunked or no body (checked by ``parse_head``)."""
        raw = self.headers.get("content-length")
        return int(raw) if raw is not None else None

    @property
    def has_body(self) -> bool:
        return self.chunked or bool(self.content_length)


def parse_head(raw: bytes) -> Head:
    """The head as read up to and including the blank line; raises ``BadRequest``."""
    lines = raw.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or parts[2] not in ("HTTP/1.1", "HTTP/1.0") or not parts[0].isalpha():
        raise BadRequest("not an HTTP/1.1 request line")
    headers = http11.header_fields(lines[1:])
    encoding = headers.get("transfer-encoding")
    if encoding is not None:
        if encoding.lower() != "chunked":
            raise BadRequest("only Transfer-Encoding: chunked is understood")
        if "content-length" in headers:
            raise BadRequest("both Content-Length and Transfer-Encoding")
    length = headers.get("content-length")
    if length is not None and not (length.isdigit() and length.isascii() and len(length) < 19):
        raise BadRequest("Content-Length is not a number")
    return Head(parts[0], parts[1], parts[2], headers)


async def read_head(reader: asyncio.StreamReader) -> Head | None:
    """The next request head, or None when the peer closed between requests."""
    try:
        raw = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as exc:
        if exc.partial.strip():
            raise BadRequest("the request head was cut short") from None
        return None
    except asyncio.LimitOverrunError:
        raise BadRequest(f"request head over {MAX_HEAD} bytes") from None
    return parse_head(raw)


async def read_body(reader: asyncio.StreamReader, head: Head, limit: int) -> bytes:
    """The whole body; ``BodyTooLarge`` as soon as it passes ``limit`` bytes (chunked too)."""
    if not head.chunked:
        length = head.content_length or 0
        if length > limit:
            raise BodyTooLarge
        return await reader.readexactly(length) if length else b""
    return await http11.read_chunked(reader, limit)


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    body: bytes
    content_type: str = "text/plain; charset=utf-8"
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def text(cls, status: int, line: str, **headers: str) -> Answer:
        return cls(status, (line + "\n").encode(), headers=headers)

    @classmethod
    def json(cls, status: int, value: object) -> Answer:
        return cls(status, json.dumps(value).encode(), "application/json; charset=utf-8")

    def encode(self, *, close: bool) -> bytes:
        lines = [
            f"HTTP/1.1 {self.status} {HTTPStatus(self.status).phrase}",
            f"Content-Type: {self.content_type}",
            f"Content-Length: {len(self.body)}",
            *(f"{name}: {value}" for name, value in self.headers.items()),
        ]
        if close:
            lines.append("Connection: close")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + self.body


CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"

__all__ = [
    "CONTINUE",
    "MAX_HEAD",
    "Answer",
    "BadRequest",
    "BodyTooLarge",
    "Head",
    "parse_head",
    "read_body",
    "read_head",
]
