"""The poll's kept-alive GET over real sockets: a scripted HTTP server on port 0 answers each
request with raw bytes, so every way a server can frame (or break) an answer is exercised."""

from __future__ import annotations

import asyncio
import gzip
import socket
import ssl
import struct
from collections.abc import AsyncIterator, Callable
from decimal import Decimal
from pathlib import Path

import pytest
import trustme

from topup_guard.errors import (
    MalformedResponseError,
    OutcomeUnknownError,
    RequestNotSentError,
)
from topup_guard.vonage import VonageClient
from topup_guard.vonage.keepalive import KeepAliveGet
from topup_guard.vonage.parsing import Exchange

KEY = "abcd1234"
SECRET = "Sup3rS3cretValue"
BALANCE = b'{"value": 10.28, "autoReload": false}'
WHERE = Exchange("GET", "/account/get-balance")


def ok(body: bytes = BALANCE, *extra: str) -> bytes:
    head = ["HTTP/1.1 200 OK", "Content-Type: application/json", f"Content-Length: {len(body)}"]
    return ("\r\n".join([*head, *extra]) + "\r\n\r\n").encode() + body


class Scripted:
    """Answers the n-th request with ``answers[n]`` (bytes, or a callable taking the writer)."""

    def __init__(self) -> None:
        self.answers: list[bytes | Callable[[asyncio.StreamWriter], object]] = []
        self.requests: list[bytes] = []
        self.connections = 0
        self.writers: list[asyncio.StreamWriter] = []

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.writers.append(writer)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                self.requests.append(head)
                answer = self.answers[len(self.requests) - 1]
                if callable(answer):
                    result = answer(writer)
                    if asyncio.iscoroutine(result):
                        await result
                    if writer.is_closing():
                        return
                else:
                    writer.write(answer)
                    await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


@pytest.fixture
async def server() -> AsyncIterator[tuple[Scripted, str]]:
    script = Scripted()
    srv = await asyncio.start_server(script.handle, "127.0.0.1", 0)
    port = srv.sockets[0].getsockname()[1]
    yield script, f"http://127.0.0.1:{port}"
    for w in script.writers:
        w.close()
    srv.close()


def reader(url: str, timeout: float = 2.0) -> KeepAliveGet:
    return KeepAliveGet(url, {"Authorization": "Basic c2VjcmV0", "Accept": "x"}, timeout=timeout)


async def test_many_reads_share_one_connection(server: tuple[Scripted, str]) -> None:
    script, url = server
    script.answers = [ok()] * 5
    get = reader(url)
    for _ in range(5):
        answer = await get.get("/account/get-balance", WHERE)
        assert (answer.status, answer.body) == (200, BALANCE)
    await get.close()
    assert script.connections == 1
    head = script.requests[0].decode()
    assert head.startswith("GET /account/get-balance HTTP/1.1\r\n")
    assert f"Host: {url.removeprefix('http://')}\r\n" in head
    assert "Authorization: Basic c2VjcmV0\r\n" in head


async def test_chunked_gzip_and_close_delimited_answers_are_read_whole(
    server: tuple[Scripted, str],
) -> None:
    script, url = server
    zipped = gzip.compress(BALANCE)
    chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-Request-Id: r-1\r\n\r\n"
    chunked += b"5;ext=1\r\n" + BALANCE[:5] + b"\r\n" + f"{len(BALANCE) - 5:x}".encode()
    chunked += b"\r\n" + BALANCE[5:] + b"\r\n0\r\nTrailer: x\r\n\r\n"

    def http10(writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.0 200 OK\r\n\r\n" + BALANCE)
        writer.close()

    script.answers = [chunked, ok(zipped, "Content-Encoding: gzip"), http10, ok()]
    get = reader(url)
    first = await get.get("/account/get-balance", WHERE)
    assert first.body == BALANCE
    assert first.request_id == "r-1"  # looked up case-insensitively
    assert first.headers["x-request-id"] == first.headers["X-REQUEST-ID"] == "r-1"
    assert (await get.get("/account/get-balance", WHERE)).body == BALANCE
    assert (await get.get("/account/get-balance", WHERE)).body == BALANCE  # ended by the close
    assert (await get.get("/account/get-balance", WHERE)).body == BALANCE  # on a new connection
    await get.close()
    assert script.connections == 2


async def test_a_kept_connection_closed_while_idle_is_read_again_once(
    server: tuple[Scripted, str],
) -> None:
    script, url = server

    def close_unanswered(writer: asyncio.StreamWriter) -> None:
        writer.close()  # the server's keep-alive timer ran out as our request arrived

    script.answers = [ok(), close_unanswered, ok()]
    get = reader(url)
    await get.get("/account/get-balance", WHERE)
    answer = await get.get("/account/get-balance", WHERE)
    assert answer.body == BALANCE
    assert (len(script.requests), script.connections) == (3, 2)
    await get.close()


async def test_a_kept_connection_reset_by_the_server_is_read_again_once(
    server: tuple[Scripted, str],
) -> None:
    script, url = server

    def reset(writer: asyncio.StreamWriter) -> None:
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.transport.abort()  # an RST, not a FIN

    script.answers = [ok(), reset, ok()]
    get = reader(url)
    await get.get("/account/get-balance", WHERE)
    assert (await get.get("/account/get-balance", WHERE)).body == BALANCE
    assert (len(script.requests), script.connections) == (3, 2)
    await get.close()


async def test_interim_answers_are_skipped(server: tuple[Scripted, str]) -> None:
    script, url = server
    early = b"HTTP/1.1 103 Early Hints\r\nLink: </x>; rel=preload\r\n\r\n"
    script.answers = [early + ok(), ok()]
    get = reader(url)
    first = await get.get("/account/get-balance", WHERE)
    assert (first.status, first.body) == (200, BALANCE)
    assert (await get.get("/account/get-balance", WHERE)).body == BALANCE  # framing intact
    await get.close()
    assert script.connections == 1


async def test_a_fresh_connection_closed_unanswered_is_not_read_again(
    server: tuple[Scripted, str],
) -> None:
    script, url = server
    script.answers = [lambda w: w.close(), ok()]
    with pytest.raises(OutcomeUnknownError, match="GET /account/get-balance"):
        await reader(url).get("/account/get-balance", WHERE)
    assert len(script.requests) == 1


@pytest.mark.parametrize(
    "answer",
    [
        b"HTTP/1.1 2x0 OK\r\n\r\n",
        b"SPDY/3 200 OK\r\nContent-Length: 0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nbroken header line\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: ten\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Encoding: br\r\nContent-Length: 2\r\n\r\n{}",
        b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: 2\r\n\r\n{}",
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}",
    ],
    ids=["status", "protocol", "header", "length", "chunk", "brotli", "bad-gzip", "two-lengths"],
)
async def test_an_answer_that_breaks_http_is_an_unknown_outcome(
    server: tuple[Scripted, str], answer: bytes
) -> None:
    script, url = server
    script.answers = [answer, ok()]
    get = reader(url)
    with pytest.raises(OutcomeUnknownError) as caught:
        await get.get("/account/get-balance", WHERE)
    assert "127.0.0.1" not in str(caught.value)
    assert (await get.get("/account/get-balance", WHERE)).body == BALANCE  # a new connection
    await get.close()
    assert script.connections == 2


async def test_a_truncated_body_is_an_unknown_outcome(server: tuple[Scripted, str]) -> None:
    script, url = server

    def truncated(writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n" + BALANCE)
        writer.close()

    script.answers = [truncated]
    get = reader(url)
    with pytest.raises(OutcomeUnknownError, match="ServerDisconnected"):
        await get.get("/account/get-balance", WHERE)
    await get.close()


async def test_an_oversized_body_is_never_kept_and_drops_the_connection(
    server: tuple[Scripted, str],
) -> None:
    script, url = server
    huge = b"HTTP/1.1 200 OK\r\nContent-Length: 2000000\r\n\r\n"
    script.answers = [huge, ok()]
    get = reader(url)
    answer = await get.get("/account/get-balance", WHERE)
    assert (answer.too_large, answer.body) == (True, b"")
    assert (await get.get("/account/get-balance", WHERE)).body == BALANCE
    await get.close()
    assert script.connections == 2


async def test_a_server_that_never_answers_times_out_as_an_unknown_outcome(
    server: tuple[Scripted, str],
) -> None:
    script, url = server
    never = asyncio.Event()

    async def hang(_: asyncio.StreamWriter) -> None:
        await never.wait()

    script.answers = [hang]
    started = asyncio.get_running_loop().time()
    with pytest.raises(OutcomeUnknownError, match="TimeoutError"):
        await reader(url, timeout=0.3).get("/account/get-balance", WHERE)
    assert asyncio.get_running_loop().time() - started < 2.0
    never.set()


async def test_a_refused_connection_is_not_sent() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        with pytest.raises(RequestNotSentError, match="request not sent"):
            await reader(url).get("/account/get-balance", WHERE)


async def test_the_credentials_never_show_in_repr_or_vars(server: tuple[Scripted, str]) -> None:
    script, url = server
    script.answers = [ok()]
    get = reader(url)
    await get.get("/account/get-balance", WHERE)  # a request head is cached now
    assert repr(get) == f"KeepAliveGet({url})"
    assert "c2VjcmV0" not in repr(vars(get))
    await get.close()


@pytest.fixture
def tls_server(tmp_path: Path) -> tuple[trustme.CA, ssl.SSLContext, Path]:
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    cert.configure_cert(server_ctx)
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    return ca, server_ctx, ca_file


async def test_tls_is_verified_against_the_trust_store(
    tls_server: tuple[trustme.CA, ssl.SSLContext, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    _, server_ctx, ca_file = tls_server
    script = Scripted()
    script.answers = [ok(), ok()]
    srv = await asyncio.start_server(script.handle, "127.0.0.1", 0, ssl=server_ctx)
    url = f"https://127.0.0.1:{srv.sockets[0].getsockname()[1]}"
    try:
        monkeypatch.setenv("SSL_CERT_FILE", str(tmp_missing := ca_file.with_name("none.pem")))
        assert not tmp_missing.exists()
        with pytest.raises(RequestNotSentError, match="SSL"):
            await reader(url).get("/account/get-balance", WHERE)  # an unknown CA: refused
        monkeypatch.setenv("SSL_CERT_FILE", str(ca_file))
        trusted = reader(url)
        assert (await trusted.get("/account/get-balance", WHERE)).body == BALANCE
        await trusted.close()
    finally:
        for w in script.writers:
            w.close()
        srv.close()


async def test_the_client_polls_over_it_and_posts_over_aiohttp(
    server: tuple[Scripted, str],
) -> None:
    """``keepalive_reads``: get-balance on the kept connection; a malformed balance is refused
    there exactly as on aiohttp."""
    script, url = server
    script.answers = [ok(), ok(b'{"value": "lots"}')]
    async with VonageClient(KEY, SECRET, rest_url=url, keepalive_reads=True) as vonage:
        balance = await vonage.get_balance()
        assert balance.value == Decimal("10.28")
        with pytest.raises(MalformedResponseError):
            await vonage.get_balance()
    assert script.connections == 1
    assert b"Authorization: Basic " in script.requests[0]


async def test_warm_makes_the_aiohttp_session_ahead_of_the_first_top_up() -> None:
    async with VonageClient(KEY, SECRET, keepalive_reads=True) as vonage:
        assert vonage._session is None  # polls alone never need it
        vonage.warm()
        assert vonage._session is not None
        assert not vonage._session.closed
    assert vonage._session is None
