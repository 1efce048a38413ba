"""The probe server over real sockets, on a virtual clock."""

from __future__ import annotations

import json
import socket
from collections.abc import AsyncIterator, Callable
from decimal import Decimal
from typing import Any

import aiohttp
import pytest

from topup_guard.clock import VirtualClock
from topup_guard.events import Outcome
from topup_guard.health import HealthServer, check_live, freshness_limit
from topup_guard.policy.decide import Action
from topup_guard.status import GuardStatus

from .conftest import make_decision, make_forecast, make_topup

POLL = 60.0
LIMIT = 3 * POLL + 30  # 210 s


@pytest.fixture
def clock() -> VirtualClock:
    return VirtualClock(start=1000.0)


@pytest.fixture
def status(clock: VirtualClock) -> GuardStatus:
    return GuardStatus(started_at=clock.now(), poll_interval=POLL)


ServerFactory = Callable[..., Any]


@pytest.fixture
async def serve(status: GuardStatus, clock: VirtualClock) -> AsyncIterator[ServerFactory]:
    started: list[HealthServer] = []

    async def factory(**kwargs: Any) -> HealthServer:
        kwargs.setdefault("metrics", lambda: "")
        server = HealthServer(status, clock, host="127.0.0.1", port=0, poll_interval=POLL, **kwargs)
        await server.start()
        started.append(server)
        return server

    yield factory
    for server in started:
        await server.stop()


async def get(server: HealthServer, path: str) -> tuple[int, str, str]:
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{server.port}{path}") as response,
    ):
        return response.status, response.headers["Content-Type"], await response.text()


def test_freshness_limit_is_three_polls_plus_thirty_seconds() -> None:
    assert freshness_limit(60.0) == 210.0
    assert freshness_limit(5.0) == 45.0


async def test_port_zero_binds_a_real_port(serve: ServerFactory) -> None:
    server = await serve()
    assert server.port > 0


async def test_livez_is_ok_while_the_heartbeat_is_fresh_and_503_once_stale(
    serve: ServerFactory, status: GuardStatus, clock: VirtualClock
) -> None:
    server = await serve()
    status.heartbeat = clock.now()
    clock.advance(LIMIT)
    code, ctype, body = await get(server, "/livez")
    assert (code, json.loads(body)["status"]) == (200, "ok")
    assert ctype.startswith("application/json")

    clock.advance(1)
    code, _, body = await get(server, "/livez")

    assert code == 503
    assert "engine loop stuck" in json.loads(body)["reason"]


async def test_livez_gives_a_startup_grace_before_the_first_heartbeat(
    serve: ServerFactory, clock: VirtualClock
) -> None:
    server = await serve()
    code, _, body = await get(server, "/livez")
    assert (code, json.loads(body)["reason"]) == (200, "starting")

    clock.advance(LIMIT + 1)

    assert (await get(server, "/livez"))[0] == 503


async def test_readyz_needs_a_recent_balance(
    serve: ServerFactory, status: GuardStatus, clock: VirtualClock
) -> None:
    server = await serve(ready_check=lambda: True)
    code, _, body = await get(server, "/readyz")
    assert (code, json.loads(body)["reason"]) == (503, "no balance read yet")

    status.last_balance_at = clock.now()
    assert (await get(server, "/readyz"))[0] == 200

    clock.advance(LIMIT + 5)
    code, _, body = await get(server, "/readyz")
    assert code == 503
    assert json.loads(body)["reason"] == "last balance read 215s ago (limit 210s)"


@pytest.mark.parametrize("check", [lambda: False, lambda: 1 / 0])
async def test_readyz_fails_when_the_ready_check_fails_or_raises(
    serve: ServerFactory, status: GuardStatus, clock: VirtualClock, check: Callable[[], bool]
) -> None:
    status.last_balance_at = clock.now()
    server = await serve(ready_check=check)

    code, _, body = await get(server, "/readyz")

    assert code == 503
    assert json.loads(body)["reason"].startswith("ready check")


async def test_metrics_serves_prometheus_text(serve: ServerFactory) -> None:
    text = "# HELP topup_guard_balance_eur Balance.\n# TYPE topup_guard_balance_eur gauge\n"
    text += "topup_guard_balance_eur 12.5\n"
    server = await serve(metrics=lambda: text)

    code, ctype, body = await get(server, "/metrics")

    assert code == 200
    assert ctype == "text/plain; version=0.0.4; charset=utf-8"
    assert body == text


async def test_metrics_endpoint_renders_real_telemetry(serve: ServerFactory) -> None:
    from topup_guard.telemetry import setup_telemetry

    from .conftest import make_poll

    tel = setup_telemetry(environ={}, install_global=False)
    tel.sink.emit(make_poll(balance="7.25"))
    server = await serve(metrics=tel.render_prometheus)
    try:
        _, _, body = await get(server, "/metrics")
    finally:
        tel.shutdown(timeout=2.0)
    samples = dict(
        line.rsplit(" ", 1) for line in body.splitlines() if line and not line.startswith("#")
    )
    assert float(samples["topup_guard_balance_eur"]) == 7.25


async def test_status_reports_the_guard_state_as_json(
    serve: ServerFactory, status: GuardStatus, clock: VirtualClock
) -> None:
    status.balance = Decimal("12.3456")
    status.auto_reload = True
    status.last_balance_at = clock.now()
    status.heartbeat = clock.now()
    status.forecast = make_forecast(rate=0.0, tte=float("inf"))
    status.decision = make_decision(Action.TOP_UP, reason="exhaustion in 900 s")
    status.last_topup = make_topup(Outcome.SUCCEEDED, credited="10.00")
    status.topups_last_hour, status.topups_last_day = 1, 3
    status.amount_last_day = Decimal("30.00")
    status.breaker_open = True
    status.may_spend = False
    status.dry_run = True
    status.active_conditions = {"breaker_open": "3 failed top-ups"}
    server = await serve()
    clock.advance(12)

    code, ctype, body = await get(server, "/status")

    assert code == 200
    assert ctype.startswith("application/json")
    doc = json.loads(body)
    assert doc["balance"] == "12.3456"
    assert doc["balance_age_s"] == 12
    assert doc["auto_reload"] is True
    assert doc["forecast"]["time_to_exhaustion_s"] is None  # no spend: never runs out
    assert doc["forecast"]["spend_total"] == "3.5"
    assert doc["decision"]["action"] == "top_up"
    assert doc["decision"]["reason"] == "exhaustion in 900 s"
    assert doc["decision"]["projected_balance"] == "1.25"
    assert doc["last_topup"]["outcome"] == "succeeded"
    assert doc["last_topup"]["credited"] == "10.00"
    assert doc["caps_used"] == {
        "topups_last_hour": 1,
        "topups_last_day": 3,
        "amount_last_day": "30.00",
    }
    assert (doc["breaker"], doc["may_spend"], doc["dry_run"]) == ("open", False, True)
    assert doc["conditions"] == {"breaker_open": "3 failed top-ups"}


async def test_status_before_the_first_poll_has_nulls(serve: ServerFactory) -> None:
    server = await serve()

    doc = json.loads((await get(server, "/status"))[2])

    assert doc["balance"] is None
    assert doc["forecast"] is None
    assert doc["decision"] is None
    assert doc["last_topup"] is None
    assert doc["breaker"] == "closed"


async def test_check_live_follows_the_heartbeat(
    serve: ServerFactory, status: GuardStatus, clock: VirtualClock
) -> None:
    server = await serve()
    status.heartbeat = clock.now()
    base = f"http://127.0.0.1:{server.port}"

    assert await check_live(f"{base}/livez")
    assert await check_live(base)  # the path defaults to /livez

    clock.advance(LIMIT + 1)
    assert not await check_live(f"{base}/livez")


async def test_check_live_is_false_when_nothing_listens() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]

    assert not await check_live(f"http://127.0.0.1:{port}/livez", timeout=1.0)


async def test_status_masks_secrets_that_slipped_into_free_text(
    serve: ServerFactory, status: GuardStatus
) -> None:
    status.active_conditions = {"poll_failing": "GET https://rest.nexmo.com/b?api_secret=abc1234"}
    server = await serve()

    body = (await get(server, "/status"))[2]

    assert "abc1234" not in body
    assert (
        json.loads(body)["conditions"]["poll_failing"] == "GET https://rest.nexmo.com/b?[redacted]"
    )
