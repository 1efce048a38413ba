"""The sliver of HTTP/1.1 framing both ends of the guard speak on asyncio streams: header lines
and chunked bodies. The signal server reads requests with it (``signals/wire.py``), the poll's
kept-alive GET reads answers (``vonage/keepalive.py``). What is not understood is refused, never
guessed: a malformed header line, two different ``Content-Length`` values (the smuggling shape),
a malformed chunk. Bytes are decoded as latin-1, so every value maps back to the bytes sent.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable

_HEX = frozenset("0123456789abcdefABCDEF")


class Malformed(ValueError):
    """The bytes cannot be read as HTTP/1.1."""


class TooLarge(Exception):
    """A body passed the caller's limit (not read further)."""


def header_fields(lines: Iterable[str]) -> dict[str, str]:
    """Header lines (without the start line) as lower-case names; the first of repeated names
    wins. Raises ``Malformed``."""
    headers: dict[str, str] = {}
    lengths: set[str] = set()
    for line in lines:
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep or not name or name != name.strip() or line[0] in " \t":
            raise Malformed("malformed header line")
        name, value = name.lower(), value.strip(" \t")
        if name == "content-length":
            lengths.add(value)
        headers.setdefault(name, value)
    if len(lengths) > 1:
        raise Malformed("conflicting Content-Length headers")
    return headers


async def read_chunked(reader: asyncio.StreamReader, limit: int) -> bytes:
    """A chunked body, trailers read and ignored; ``TooLarge`` as soon as it passes ``limit``
    bytes, ``Malformed`` for a bad size line or chunk end."""
    chunks: list[bytes] = []
    size = 0
    while True:
        try:
            line = await reader.readuntil(b"\r\n")
        except asyncio.LimitOverrunError:
            raise Malformed("chunk size line too long") from None
        digits = line[:-2].split(b";", 1)[0].strip().decode("latin-1")
        if not digits or not set(digits) <= _HEX or len(digits) > 8:
            raise Malformed("malformed chunk size")
        chunk = int(digits, 16)
        if chunk == 0:
            break
        size += chunk
        if size > limit:
            raise TooLarge
        chunks.append(await reader.readexactly(chunk))
        if await reader.readexactly(2) != b"\r\n":
            raise Malformed("malformed chunk")
    while (await reader.readuntil(b"\r\n")) != b"\r\n":
        pass
    return b"".join(chunks)


async def close_quietly(writer: asyncio.StreamWriter) -> None:
    """Close ``writer`` and wait at most a second for it: a peer that vanished or stalls never
    holds up the closer."""
    writer.close()
    with contextlib.suppress(ConnectionError, TimeoutError):
        async with asyncio.timeout(1.0):
            await writer.wait_closed()
