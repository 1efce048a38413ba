"""The simulator's SMS API (``POST /sms/json``) over HTTP: billed per part, answered like Vonage."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import aiohttp
import pytest

from topup_guard.config import DEMO_API_KEY, DEMO_API_SECRET
from topup_guard.sim import RunningSimulator
from topup_guard.sim.routes import sms_parts
from topup_guard.vonage.payloads import basic_authorization

AUTH = {"Authorization": basic_authorization(DEMO_API_KEY, DEMO_API_SECRET)}
MESSAGE = {"from": "AcmeInc", "to": "447700900000", "text": "Your code is 1234"}
EIGHT_DECIMALS = re.compile(r"-?\d+\.\d{8}")


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
        yield session


async def send(
    http: aiohttp.ClientSession,
    sim: RunningSimulator,
    fields: dict[str, str],
    *,
    headers: dict[str, str] | None = None,
    params: dict[str, str] | None = None,
) -> dict[str, Any]:
    async with http.post(
        sim.url + "/sms/json", data=fields, headers=headers, params=params
    ) as answer:
        assert answer.status == 200  # the SMS API answers 200 whatever the outcome
        assert answer.content_type == "application/json"
        return json.loads(await answer.text())  # type: ignore[no-any-return]


async def set_balance(http: aiohttp.ClientSession, sim: RunningSimulator, value: str) -> None:
    async with http.post(sim.url + "/_sim/control", json={"balance": value}) as answer:
        assert answer.status == 200


async def test_an_accepted_message_is_billed_and_answers_status_0_with_8_decimal_strings(
    sim: RunningSimulator, http: aiohttp.ClientSession
) -> None:
    body = await send(http, sim, MESSAGE | {"client-ref": "my-ref"}, headers=AUTH)
    assert body["message-count"] == "1"
    (message,) = body["messages"]
    assert message["status"] == "0"
    assert message["remaining-balance"] == "99.99250000"
    assert message["message-price"] == "0.00750000"
    assert EIGHT_DECIMALS.fullmatch(message["remaining-balance"])
    assert message["to"] == "447700900000"
    assert message["client-ref"] == "my-ref"
    assert set(message) == {"to", "message-id", "status", "remaining-balance", "message-price",
                            "network", "client-ref"}  # fmt: skip
    assert sim.account.balance == Decimal("99.9925")
    assert sim.account.served_events == 1


@pytest.mark.parametrize("where", ["body", "query"])
async def test_api_key_and_secret_may_come_as_fields(
    sim: RunningSimulator, http: aiohttp.ClientSession, where: str
) -> None:
    creds = {"api_key": DEMO_API_KEY, "api_secret": DEMO_API_SECRET}
    if where == "body":
        body = await send(http, sim, MESSAGE | creds)
    else:
        body = await send(http, sim, MESSAGE, params=creds)
    assert body["messages"][0]["status"] == "0"


async def test_a_long_message_is_billed_per_part_with_one_balance_snapshot(
    sim: RunningSimulator, http: aiohttp.ClientSession
) -> None:
    body = await send(http, sim, MESSAGE | {"text": "x" * 400}, headers=AUTH)  # 3 x 153 septets
    assert body["message-count"] == "3"
    assert {m["remaining-balance"] for m in body["messages"]} == {"99.97750000"}
    assert len({m["message-id"] for m in body["messages"]}) == 3
    assert sim.account.balance == Decimal("100") - 3 * Decimal("0.0075")


async def test_a_message_the_balance_cannot_pay_is_status_9_and_costs_nothing(
    sim: RunningSimulator, http: aiohttp.ClientSession
) -> None:
    await set_balance(http, sim, "0.01")
    body = await send(http, sim, MESSAGE | {"text": "y" * 200}, headers=AUTH)  # 2 parts: 0.015
    assert body == {
        "message-count": "1",
        "messages": [{"to": "447700900000", "status": "9",
                      "error-text": "Quota Exceeded - rejected"}],
    }  # fmt: skip
    assert sim.account.balance == Decimal("0.01")
    assert sim.account.failed_events == 2
    ok = await send(http, sim, MESSAGE, headers=AUTH)  # one part still fits
    assert ok["messages"][0]["remaining-balance"] == "0.00250000"


async def test_bad_credentials_are_status_4_in_a_200(
    sim: RunningSimulator, http: aiohttp.ClientSession
) -> None:
    wrong = {"Authorization": basic_authorization(DEMO_API_KEY, "WrongSecret1")}
    body = await send(http, sim, MESSAGE, headers=wrong)
    assert body["messages"] == [{"status": "4", "error-text": "Bad Credentials"}]
    assert (await send(http, sim, MESSAGE))["messages"][0]["status"] == "4"
    assert sim.account.balance == Decimal("100")


async def test_a_missing_parameter_is_status_2(
    sim: RunningSimulator, http: aiohttp.ClientSession
) -> None:
    body = await send(http, sim, {"from": "AcmeInc", "text": "hi"}, headers=AUTH)
    assert body["messages"] == [{"status": "2", "error-text": "Missing to param"}]


async def test_sms_calls_are_counted_and_take_faults_like_every_vonage_endpoint(
    sim: RunningSimulator, http: aiohttp.ClientSession
) -> None:
    fault = {"endpoint": "sms", "kind": "error_500_before"}
    async with http.post(sim.url + "/_sim/faults", json=fault) as answer:
        assert answer.status == 200
    async with http.post(sim.url + "/sms/json", data=MESSAGE, headers=AUTH) as answer:
        assert answer.status == 500
    await send(http, sim, MESSAGE, headers=AUTH)
    async with http.get(sim.url + "/_sim/state") as answer:
        calls = (await answer.json())["calls"]
    assert calls["sms"] == {"200": 1, "500": 1}


@pytest.mark.parametrize(
    ("text", "kind", "parts"),
    [("a" * 160, "text", 1), ("a" * 161, "text", 2), ("a" * 306, "text", 2), ("a" * 307, "text", 3),
     ("€" * 80, "text", 1), ("€" * 81, "text", 2), ("é" * 70, "unicode", 1),
     ("é" * 71, "unicode", 2), ("é" * 134, "unicode", 2), ("é" * 135, "unicode", 3)],
)  # fmt: skip
def test_parts_are_counted_as_vonage_bills_them(text: str, kind: str, parts: int) -> None:
    assert sms_parts(text, kind) == parts
