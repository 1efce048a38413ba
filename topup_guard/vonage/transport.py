"""One HTTP exchange over aiohttp, with every aiohttp failure mapped onto the exception tree.

The line drawn here is the one the money depends on (docs/money-safety.md): a failure *while
connecting* proves the request never left, so it is ``RequestNotSentError`` and safe to resend;
any failure after that point (disconnect, reset, truncated body, read or total timeout) is
``OutcomeUnknownError``, because Vonage may have applied a POST it could not answer.
"""

from __future__ import annotations

from collections.abc import Mapping

import aiohttp
from yarl import URL

from topup_guard.errors import OutcomeUnknownError, RequestNotSentError
from topup_guard.vonage.parsing import Exchange, Response

MAX_BODY_BYTES = 1 << 20
"""Bodies beyond 1 MiB are never buffered: no Vonage answer comes anywhere near that size."""
_CHUNK = 64 * 1024

_NOT_SENT = (
    aiohttp.ClientConnectorError,  # refused, DNS, TLS handshake: no request byte was written
    aiohttp.ConnectionTimeoutError,
    aiohttp.InvalidURL,
)


async def _read_capped(resp: aiohttp.ClientResponse) -> tuple[bytes, bool]:
    """The body, or ``(b"", True)`` once it exceeds the cap (decompressed bytes are counted)."""
    if resp.content_length is not None and resp.content_length > MAX_BODY_BYTES:
        return b"", True
    chunks: list[bytes] = []
    size = 0
    content = resp.content
    while chunk := await content.read(_CHUNK):
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            return b"", True
        chunks.append(chunk)
        if content.at_eof():  # a small answer is one chunk: no second read to learn the end
            break
    return chunks[0] if len(chunks) == 1 else b"".join(chunks), False


async def send(
    session: aiohttp.ClientSession,
    url: URL,
    where: Exchange,
    *,
    headers: Mapping[str, str],
    data: bytes | None,
    params: Mapping[str, str] | None,
    client_timeout: aiohttp.ClientTimeout,
) -> Response:
    """Send once, never following a redirect; read at most :data:`MAX_BODY_BYTES` of the answer.

    Messages name the method, path and aiohttp's exception class only: aiohttp's own texts can
    carry the URL, and the aiohttp exception is not chained (``from None``) so that nothing above
    this package ever holds one.
    """
    try:
        async with session.request(
            where.method,
            url,
            headers=headers,
            data=data,
            params=params,
            allow_redirects=False,
            timeout=client_timeout,
        ) as resp:
            body, too_large = await _read_capped(resp)
            return Response(resp.status, resp.headers, body, too_large)
    except _NOT_SENT as exc:
        message = where.message(f"request not sent ({type(exc).__name__})")
        raise RequestNotSentError(message) from None
    except (aiohttp.ClientError, TimeoutError) as exc:
        message = where.message(f"outcome unknown ({type(exc).__name__})")
        raise OutcomeUnknownError(message) from None
