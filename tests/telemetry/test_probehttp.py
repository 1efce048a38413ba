"""The probes' HTTP server over real sockets: what it answers, and what it refuses to wait for."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator

import aiohttp
import pytest

from topup_guard import probehttp
from topup_guard.probehttp import ProbeServer, Reply


def boom() -> Reply:
    raise RuntimeError("handler bug")


@pytest.fixture
async def port() -> AsyncIterator[int]:
    server = ProbeServer(
        {"/ok": lambda: Reply(200, "text/plain; charset=utf-8", b"fine"), "/boom": boom}
    )
    bound = await server.start("127.0.0.1", 0)
    yield bound
    await server.stop()


async def raw(port: int, request: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request)
    await writer.drain()
    answer = await asyncio.wait_for(reader.read(), timeout=10)
    writer.close()
    return answer


async def test_get_answers_with_length_type_and_a_closed_connection(port: int) -> None:
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{port}/ok?probe=1") as response,
    ):
        assert response.status == 200
        assert response.headers["Content-Type"] == "text/plain; charset=utf-8"
        assert response.headers["Content-Length"] == "4"
        assert response.headers["Connection"] == "close"
        assert await response.text() == "fine"


async def test_head_has_the_headers_without_the_body(port: int) -> None:
    answer = await raw(port, b"HEAD /ok HTTP/1.1\r\nHost: x\r\n\r\n")

    assert answer.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"Content-Length: 4\r\n" in answer
    assert answer.endswith(b"\r\n\r\n")


@pytest.mark.parametrize(
    ("request_line", "status"),
    [
        (b"GET /nowhere HTTP/1.1", b"404 Not Found"),
        (b"POST /ok HTTP/1.1", b"405 Method Not Allowed"),
        (b"GET /ok", b"400 Bad Request"),
        (b"GET /boom HTTP/1.1", b"500 Internal Server Error"),
    ],
)
async def test_unknown_paths_other_methods_garbage_and_handler_bugs_get_a_status(
    port: int, request_line: bytes, status: bytes
) -> None:
    answer = await raw(port, request_line + b"\r\nHost: x\r\n\r\n")

    assert answer.startswith(b"HTTP/1.1 " + status + b"\r\n")


async def test_an_oversized_request_head_is_closed_unanswered(port: int) -> None:
    huge = b"GET /ok HTTP/1.1\r\nX-Pad: " + b"a" * (probehttp.MAX_HEAD + 10) + b"\r\n\r\n"

    assert await raw(port, huge) == b""


async def test_a_client_that_never_finishes_its_request_is_dropped(
    port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(probehttp, "REQUEST_TIMEOUT", 0.2)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /ok HTTP/1.1\r\n")  # and never the blank line

    assert await asyncio.wait_for(reader.read(), timeout=5) == b""
    writer.close()


async def test_a_port_in_use_fails_the_start_with_oserror() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        server = ProbeServer({})
        with pytest.raises(OSError, match="in use"):
            await server.start("127.0.0.1", taken.getsockname()[1])
