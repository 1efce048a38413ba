"""The sent / not-sent line over real sockets, against a local aiohttp.web server on port 0.

aioresponses can only raise the exceptions we name; these tests let aiohttp itself produce them,
so a change in how aiohttp reports a dropped connection or a refused port shows up here.
"""

from __future__ import annotations

import asyncio
import base64
import socket
from collections.abc import AsyncIterator, Iterator
from decimal import Decimal

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from topup_guard.errors import OutcomeUnknownError, RequestNotSentError
from topup_guard.vonage import VonageClient

KEY = "abcd1234"
SECRET = "Sup3rS3cretValue"
TRX = "8ef2447e69604f642ae59363aa5f781b"


class FakeVonage:
    """Records what arrived; ``hang`` is released at teardown so no handler outlives the test."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str, str, bytes]] = []
        self.hang = asyncio.Event()

    async def _record(self, request: web.Request) -> bytes:
        body = await request.read()
        auth = request.headers.get("Authorization", "")
        self.seen.append((request.method, request.path_qs, auth, body))
        return body

    async def balance(self, request: web.Request) -> web.Response:
        await self._record(request)
        return web.json_response({"value": 10.28, "autoReload": True})

    async def top_up_then_drop(self, request: web.Request) -> web.Response:
        await self._record(request)
        assert request.transport is not None
        request.transport.close()  # the POST arrived; the answer never will
        return web.Response()

    async def settings_then_hang(self, request: web.Request) -> web.Response:
        await self._record(request)
        await self.hang.wait()
        return web.json_response({})


@pytest.fixture
async def fake() -> AsyncIterator[tuple[FakeVonage, str]]:
    state = FakeVonage()
    app = web.Application()
    app.router.add_get("/account/get-balance", state.balance)
    app.router.add_post("/account/top-up", state.top_up_then_drop)
    app.router.add_post("/account/settings", state.settings_then_hang)
    server = TestServer(app, host="127.0.0.1", port=0)
    await server.start_server()
    yield state, str(server.make_url("/"))
    state.hang.set()
    await server.close()


@pytest.fixture
def refused_url() -> Iterator[str]:
    """A bound port with no listener: connecting is refused at once, deterministically."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"


async def test_real_request_carries_credentials_only_in_the_header(
    fake: tuple[FakeVonage, str],
) -> None:
    state, url = fake
    async with VonageClient(KEY, SECRET, rest_url=url) as vonage:
        balance = await vonage.get_balance()
    assert balance.value == Decimal("10.28")
    [(method, path_qs, auth, body)] = state.seen
    assert (method, path_qs, body) == ("GET", "/account/get-balance", b"")
    assert auth == "Basic " + base64.b64encode(f"{KEY}:{SECRET}".encode()).decode()


async def test_dropped_connection_after_the_post_arrived_is_outcome_unknown(
    fake: tuple[FakeVonage, str],
) -> None:
    state, url = fake
    async with VonageClient(KEY, SECRET, rest_url=url) as vonage:
        with pytest.raises(OutcomeUnknownError, match="POST /account/top-up"):
            await vonage.top_up(TRX)
    assert [s[3] for s in state.seen] == [f"trx={TRX}".encode()]  # it did arrive


async def test_read_timeout_after_sending_is_outcome_unknown(
    fake: tuple[FakeVonage, str],
) -> None:
    state, url = fake
    # The handler never answers; 1 s (not less) lets the request reach it on a loaded machine.
    async with VonageClient(KEY, SECRET, rest_url=url, timeout=1.0) as vonage:
        with pytest.raises(OutcomeUnknownError):
            await vonage.get_settings()
    assert len(state.seen) == 1


async def test_refused_port_is_request_not_sent(refused_url: str) -> None:
    async with VonageClient(KEY, SECRET, rest_url=refused_url) as vonage:
        with pytest.raises(RequestNotSentError, match="POST /account/top-up"):
            await vonage.top_up(TRX)
