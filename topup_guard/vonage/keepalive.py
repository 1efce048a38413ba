"""The poll's read: one kept-alive HTTP/1.1 connection for ``GET`` without a body.

Why not aiohttp, which sends everything else: the guard reads the balance every few seconds for
months, and aiohttp's request machinery (request and response objects, connector, timers,
tracing hooks) was half of a poll's CPU. A GET of a fixed path needs none of it: this writes one
request head it built once and reads one answer, on a connection it keeps open between polls.
Reads only — the top-up ``POST`` and every other call stay on aiohttp (``transport.py``), with
its tested line between "not sent" and "outcome unknown"; and without aiohttp loaded until one of
them is made, a guard that only polls stays small.

What it speaks, and what it refuses (a refusal is an error, never a balance):
- ``Content-Length`` bodies, ``chunked`` bodies (framing shared with the signal server:
  ``http11.py``), and bodies ended by the server closing (HTTP/1.0
  or ``Connection: close``); ``gzip``/``deflate`` decoded should a server send them unasked;
  any other encoding, a malformed head or chunk, a head over 64 KiB: ``OutcomeUnknownError``.
- Bodies over :data:`transport.MAX_BODY_BYTES` are not kept (``too_large``), as with aiohttp.
- No redirects followed, no proxy (as the aiohttp session: ``trust_env`` off), no cookies.
- TLS verified against the system's trust store (``ssl.create_default_context``, loaded at the
  first HTTPS read; ``SSL_CERT_FILE``/``SSL_CERT_DIR`` honoured).
- Interim answers (1xx, such as 103 Early Hints) are skipped; a protocol switch is refused.
- A kept connection the server closed or reset while idle fails before any byte of the answer:
  the read (idempotent) is tried once more on a fresh connection. Any other failure (a timeout
  included) closes the connection; the next read opens a new one.

Errors map as in ``transport.py``: failing to connect (refused, DNS, TLS handshake, connect
timeout) is ``RequestNotSentError``; anything after the request was written is
``OutcomeUnknownError``. Messages name the method, path and exception class only.
"""

from __future__ import annotations

import asyncio
import ssl
import zlib
from collections.abc import Iterator, Mapping
from urllib.parse import urlsplit

from topup_guard.errors import OutcomeUnknownError, RequestNotSentError
from topup_guard.http11 import Malformed, TooLarge, close_quietly, header_fields, read_chunked
from topup_guard.vonage.parsing import Exchange, Response

MAX_HEAD_BYTES = 64 * 1024
MAX_BODY_BYTES = 1 << 20  # as transport.MAX_BODY_BYTES (not imported: that module loads aiohttp)
_DECODERS = {"gzip": 16 + zlib.MAX_WBITS, "x-gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}


class _StaleConnection(Exception):
    """A kept connection was closed before any byte of the answer: safe to read again."""


class Headers(Mapping[str, str]):
    """Response headers, looked up case-insensitively (the first of a repeated name wins)."""

    __slots__ = ("_by_lower",)

    def __init__(self, pairs: dict[str, str]) -> None:
        self._by_lower = pairs

    def __getitem__(self, name: str) -> str:
        return self._by_lower[name.lower()]

    def __iter__(self) -> Iterator[str]:
        return iter(self._by_lower)

    def __len__(self) -> int:
        return len(self._by_lower)

    def __repr__(self) -> str:
        return f"Headers({self._by_lower!r})"


class _Sealed:
    """The request heads (they carry the ``Authorization`` header): never in ``repr``/``vars()``."""

    __slots__ = ("header_lines", "heads")

    def __init__(self, header_lines: str) -> None:
        self.header_lines = header_lines
        self.heads: dict[str, bytes] = {}

    def __repr__(self) -> str:
        return "'***'"


class KeepAliveGet:
    """``GET`` of paths on one origin over a connection kept open between reads.

    One read at a time (the guard's poll); a second concurrent read waits for the first.
    """

    def __init__(self, base_url: str, headers: Mapping[str, str], *, timeout: float) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("base_url must be an http(s) URL")
        self._tls = parts.scheme == "https"
        self._host = parts.hostname
        self._port = parts.port or (443 if self._tls else 80)
        self._prefix = parts.path.rstrip("/")
        default_port = self._port == (443 if self._tls else 80)
        host = f"[{self._host}]" if ":" in self._host else self._host
        self._host_header = host if default_port else f"{host}:{self._port}"
        self._sealed = _Sealed("".join(f"{k}: {v}\r\n" for k, v in headers.items()))
        self._timeout = timeout
        self._connect_timeout = min(timeout, 5.0)
        self._lock = asyncio.Lock()
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._ssl: ssl.SSLContext | None = None

    def __repr__(self) -> str:  # the headers carry the credentials: never shown
        return f"KeepAliveGet({'https' if self._tls else 'http'}://{self._host_header})"

    async def get(self, path: str, where: Exchange) -> Response:
        async with self._lock:
            try:
                return await self._exchange(path, where)
            except _StaleConnection:  # only a kept connection goes stale: the next one is new
                return await self._exchange(path, where)

    async def close(self) -> None:
        writer = self._writer
        self._drop()
        if writer is not None:
            await close_quietly(writer)

    def _drop(self) -> None:
        """Forget the connection at once (no await: this also runs while being cancelled)."""
        writer, self._reader, self._writer = self._writer, None, None
        if writer is not None:
            writer.close()

    # --- one exchange ----------------------------------------------------------------------
    async def _exchange(self, path: str, where: Exchange) -> Response:
        reused = self._writer is not None
        if not reused:
            await self._connect(where)
        reader, writer = self._reader, self._writer
        assert reader is not None
        assert writer is not None
        keep = False
        try:
            async with asyncio.timeout(self._timeout):
                try:
                    writer.write(self._head(path))
                    await writer.drain()
                    raw = await reader.readuntil(b"\r\n\r\n")
                except (OSError, asyncio.IncompleteReadError) as exc:
                    # Nothing of an answer came: on a kept connection the server had closed it.
                    partial = isinstance(exc, asyncio.IncompleteReadError) and exc.partial
                    if reused and not partial:
                        raise _StaleConnection from None
                    raise
                response, keep = await self._read_answer(reader, raw)
            return response
        except _StaleConnection:
            raise
        except (Malformed, OSError, TimeoutError, asyncio.IncompleteReadError,
                asyncio.LimitOverrunError, ValueError, zlib.error) as exc:  # fmt: skip
            name = "ServerDisconnected" if isinstance(exc, asyncio.IncompleteReadError) else (
                type(exc).__name__)  # fmt: skip
            raise OutcomeUnknownError(where.message(f"outcome unknown ({name})")) from None
        finally:
            if not keep:
                self._drop()

    async def _connect(self, where: Exchange) -> None:
        context = self._tls_context() if self._tls else None
        try:
            async with asyncio.timeout(self._connect_timeout):
                self._reader, self._writer = await asyncio.open_connection(
                    self._host,
                    self._port,
                    ssl=context,
                    server_hostname=self._host if context else None,
                    limit=MAX_HEAD_BYTES,
                )
        except (OSError, TimeoutError, ssl.SSLError) as exc:
            raise RequestNotSentError(
                where.message(f"request not sent ({type(exc).__name__})")
            ) from None

    def _tls_context(self) -> ssl.SSLContext:
        if self._ssl is None:
            self._ssl = ssl.create_default_context()
        return self._ssl

    def _head(self, path: str) -> bytes:
        sealed = self._sealed
        head = sealed.heads.get(path)
        if head is None:
            if any(c in path for c in "\r\n ") or not path.startswith("/"):
                raise ValueError("path must be an absolute path without spaces")
            head = (
                f"GET {self._prefix}{path} HTTP/1.1\r\nHost: {self._host_header}\r\n"
                f"{sealed.header_lines}Connection: keep-alive\r\n\r\n"
            ).encode("latin-1")
            if len(sealed.heads) < 16:
                sealed.heads[path] = head
        return head

    async def _read_answer(self, reader: asyncio.StreamReader, raw: bytes) -> tuple[Response, bool]:
        """The answer whose head is ``raw``, and whether the connection may carry the next read.
        Interim answers (1xx: 103 Early Hints, an unasked 100 Continue) are skipped."""
        for _ in range(8):
            status_line, _, rest = raw[:-4].decode("latin-1").partition("\r\n")
            version, status = _status(status_line)
            headers = header_fields(rest.split("\r\n"))
            if not 100 <= status < 200 or status == 101:
                break
            raw = await reader.readuntil(b"\r\n\r\n")
        else:
            raise Malformed("interim answers without end")
        if status == 101:
            raise Malformed("protocol switch")
        keep = version == "HTTP/1.1" and "close" not in headers.get("connection", "").lower()
        body, too_large, ended_by_close = await _body(reader, headers, status)
        encoding = headers.get("content-encoding", "identity").strip().lower()
        if encoding not in ("", "identity") and not too_large:
            if encoding not in _DECODERS:
                raise Malformed(f"content-encoding {encoding}")
            body = zlib.decompress(body, _DECODERS[encoding])
            too_large = len(body) > MAX_BODY_BYTES
            body = b"" if too_large else body
        return Response(status, Headers(headers), body, too_large), keep and not (
            too_large or ended_by_close)  # fmt: skip


def _status(line: str) -> tuple[str, int]:
    version, _, rest = line.partition(" ")
    code = rest[:3]
    well_formed = len(code) == 3 and code.isdigit() and (len(rest) == 3 or rest[3] == " ")
    if version not in ("HTTP/1.1", "HTTP/1.0") or not well_formed:
        raise Malformed("status line")
    return version, int(code)


async def _body(
    reader: asyncio.StreamReader, headers: Mapping[str, str], status: int
) -> tuple[bytes, bool, bool]:
    """(body, too large, ended by the server closing)."""
    if status in (204, 304) or 100 <= status < 200:
        return b"", False, False
    if "chunked" in headers.get("transfer-encoding", "").lower():
        try:
            return await read_chunked(reader, MAX_BODY_BYTES), False, False
        except TooLarge:
            return b"", True, True  # not read further: the connection is dropped
    length = headers.get("content-length")
    if length is not None:
        if not length.isdigit():
            raise Malformed("content-length")
        size = int(length)
        if size > MAX_BODY_BYTES:
            return b"", True, True  # not read: the connection is dropped, not drained
        return await reader.readexactly(size), False, False
    body = await reader.read(MAX_BODY_BYTES + 1)
    while len(body) <= MAX_BODY_BYTES and (more := await reader.read(MAX_BODY_BYTES + 1)):
        body += more
    return (b"", True, True) if len(body) > MAX_BODY_BYTES else (body, False, True)
