"""The signal server's HTTP over raw sockets: what a plain client library does, and what a hostile
one tries (keep-alive, 100-continue, chunked, malformed heads, the request-smuggling shape)."""

from __future__ import annotations

import asyncio
import re

import pytest

from tests.signals.conftest import TOKEN, Running
from topup_guard.signals import wire

BALANCE = b'{"balance": "4.20"}'


async def exchange(running: Running, *requests: bytes) -> bytes:
    """Send ``requests`` on one connection; everything the server answers until it closes."""
    reader, writer = await asyncio.open_connection("127.0.0.1", running.server.port)
    try:
        for request in requests:
            writer.write(request)
        await writer.drain()
        writer.write_eof()
        async with asyncio.timeout(5):
            return await reader.read(-1)
    finally:
        writer.close()


def post(body: bytes, *, path: str = "/v1/signals/balance", extra: str = "") -> bytes:
    head = f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n{extra}\r\n"
    return head.encode() + body


def statuses(answers: bytes) -> list[int]:
    return [int(code) for code in re.findall(rb"HTTP/1\.1 (\d{3}) ", answers)]


async def test_two_requests_on_one_keep_alive_connection_are_both_taken(signal: Running) -> None:
    answers = await exchange(signal, post(BALANCE), post(BALANCE))
    assert statuses(answers) == [202, 202]
    assert answers.count(b'{"status": "accepted"}') == 2
    await asyncio.sleep(0.01)
    assert len(signal.inbox.drain().readings) == 2


async def test_a_chunked_body_is_read_like_a_sized_one(signal: Running) -> None:
    chunked = (
        b"POST /v1/signals/balance HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"a\r\n" + BALANCE[:10] + b"\r\n" + f"{len(BALANCE) - 10:x}\r\n".encode()
        + BALANCE[10:] + b"\r\n0\r\n\r\n"
    )  # fmt: skip
    assert statuses(await exchange(signal, chunked)) == [202]


async def test_expect_100_continue_gets_a_100_before_the_body_is_sent(signal: Running) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", signal.server.port)
    try:
        writer.write(post(b"", extra="Expect: 100-continue\r\n").replace(
            b"Content-Length: 0", f"Content-Length: {len(BALANCE)}".encode()))  # fmt: skip
        async with asyncio.timeout(5):
            assert await reader.readuntil(b"\r\n\r\n") == wire.CONTINUE
            writer.write(BALANCE)
            assert b" 202 " in await reader.readuntil(b"\r\n\r\n")
    finally:
        writer.close()


async def test_http_1_0_without_keep_alive_is_answered_and_closed(signal: Running) -> None:
    request = post(BALANCE).replace(b"HTTP/1.1", b"HTTP/1.0")
    answers = await exchange(signal, request, post(BALANCE))
    assert statuses(answers) == [202]
    assert b"Connection: close" in answers


async def test_a_refused_request_with_a_small_body_keeps_the_connection(guarded: Running) -> None:
    auth = f"Authorization: Bearer {TOKEN}\r\n"
    answers = await exchange(guarded, post(BALANCE), post(BALANCE, extra=auth))
    assert statuses(answers) == [401, 202]
    assert guarded.rejected("unauthorized") == 1


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"GARBAGE\r\n\r\n",
        b"POST /v1/signals/balance HTTP/2.0\r\n\r\n",
        b"POST /v1/signals/balance HTTP/1.1\r\n folded: header\r\n\r\n",
        b"POST /v1/signals/balance HTTP/1.1\r\nContent-Length: 5\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        b"POST /v1/signals/balance HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
        b"POST /v1/signals/balance HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
        b"POST /v1/signals/balance HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n",
        b"POST /v1/signals/balance HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        b"POST /v1/signals/balance HTTP/1.1\r\nX-Long: " + b"a" * wire.MAX_HEAD + b"\r\n\r\n",
    ],
    ids=["no-request-line", "http-2", "folded", "smuggling", "two-lengths", "negative-length",
         "gzip-encoding", "bad-chunk", "huge-head"],
)  # fmt: skip
async def test_a_request_that_is_not_plain_http_1_1_is_a_400_counted_and_closed(
    signal: Running, request_bytes: bytes
) -> None:
    answers = await exchange(signal, request_bytes, post(BALANCE))
    assert statuses(answers) == [400]
    assert signal.rejected("malformed") == 1
    await asyncio.sleep(0.01)
    assert signal.inbox.drain().readings == []


async def test_a_client_that_sends_nothing_is_disconnected_unanswered(
    signal: Running, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("topup_guard.signals.server.REQUEST_TIMEOUT", 0.2)
    reader, writer = await asyncio.open_connection("127.0.0.1", signal.server.port)
    try:
        writer.write(b"POST /v1/signals/balance HTTP/1.1\r\n")  # and then nothing
        async with asyncio.timeout(5):
            assert await reader.read(-1) == b""
    finally:
        writer.close()
