"""The simulator over real sockets: Vonage's status codes, content types, bodies and faults."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Mapping
from decimal import Decimal
from typing import Any

import aiohttp
import pytest

from tests.conftest import DEMO_CREDENTIALS, QUIET_SCENARIO
from topup_guard.clock import VirtualClock
from topup_guard.config import DEMO_API_KEY, DEMO_API_SECRET, DEMO_TRX
from topup_guard.sim import RunningSimulator, start_simulator
from topup_guard.vonage.payloads import basic_authorization


def basic_auth(key: str, secret: str) -> dict[str, str]:
    """Request headers carrying HTTP Basic credentials (aiohttp 3.14 deprecates BasicAuth)."""
    return {"Authorization": basic_authorization(key, secret)}


AUTH = basic_auth(DEMO_API_KEY, DEMO_API_SECRET)
BAD_AUTH = basic_auth(DEMO_API_KEY, "WrongSecret1")
PROBLEM = "application/problem+json"
SECRETS = f"/accounts/{DEMO_API_KEY}/secrets"
SUBS = f"/accounts/{DEMO_API_KEY}/subaccounts"
TRANSFERS = f"/accounts/{DEMO_API_KEY}/balance-transfers"


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
        yield session


async def call(
    http: aiohttp.ClientSession,
    sim: RunningSimulator,
    method: str,
    path: str,
    *,
    auth: dict[str, str] | None = AUTH,
    **kw: Any,
) -> tuple[int, str, Any, Mapping[str, str]]:
    headers = {**(auth or {}), **kw.pop("headers", {})}
    async with http.request(method, sim.url + path, headers=headers, **kw) as resp:
        text = await resp.text()
        is_json = resp.content_type.endswith("json")
        body = json.loads(text, parse_float=Decimal) if text and is_json else text or None
        return resp.status, resp.content_type, body, resp.headers.copy()  # case-insensitive


async def state(http: aiohttp.ClientSession, sim: RunningSimulator) -> dict[str, Any]:
    return (await call(http, sim, "GET", "/_sim/state", auth=None))[2]  # type: ignore[no-any-return]


async def control(http: aiohttp.ClientSession, sim: RunningSimulator, **values: Any) -> None:
    status, *_ = await call(http, sim, "POST", "/_sim/control", json=values, auth=None)
    assert status == 200


async def fault(http: aiohttp.ClientSession, sim: RunningSimulator, **spec: Any) -> list[Any]:
    status, _, body, _ = await call(http, sim, "POST", "/_sim/faults", json=spec, auth=None)
    assert status == 200
    return body["faults"]  # type: ignore[no-any-return]


async def top_up(http: aiohttp.ClientSession, sim: RunningSimulator, trx: str = DEMO_TRX) -> Any:
    return await call(http, sim, "POST", "/account/top-up", data={"trx": trx})


# --- rest.nexmo.com -------------------------------------------------------------------------
async def test_get_balance_answers_value_and_autoreload(
    sim: RunningSimulator, http: aiohttp.ClientSession
) -> None:
    status, ctype, body, headers = await call(http, sim, "GET", "/account/get-balance")
    assert (status, ctype) == (200, "application/json")
    assert body == {"value": Decimal("100.0"), "autoReload": True}
    uuid.UUID(headers["X-Request-Id"])


async def test_balance_is_an_exact_number_with_at_most_eight_decimals(
    sim: RunningSimulator, http: aiohttp.ClientSession
) -> None:
    await control(http, sim, balance="29.182022934")
    async with http.get(sim.url + "/account/get-balance", headers=AUTH) as resp:
        assert await resp.text() == '{"value": 29.18202293, "autoReload": true}'


async def test_top_up_succeeds_with_the_right_trx(
    sim: RunningSimulator, http: aiohttp.ClientSession
) -> None:
    status, ctype, body, _ = await top_up(http, sim)
    assert (status, ctype) == (200, "application/json")
    assert body == {"error-code": "200", "error-code-label": "success"}
    after = await state(http, sim)
    assert after["balance"] == Decimal("150.0")
    assert [t["amount"] for t in after["topups"]] == [Decimal("50.0")]


@pytest.mark.parametrize(
    ("form", "setup", "status", "body"),
    [
        (
            {},
            {},
            400,
            {
                "type": "BAD_REQUEST",
                "error_title": "Bad Request",
                "invalid_parameters": {"trx": "Is required."},
            },
        ),
        (
            {"trx": "wrong"},
            {},
            401,
            {"error-code": "401", "error-code-label": "not auto-reload enabled"},
        ),
        (
            {"trx": DEMO_TRX},
            {"auto_reload": False},
            401,
            {"error-code": "401", "error-code-label": "not auto-reload enabled"},
        ),
        (
            {"trx": DEMO_TRX},
            {"fail_payments": 1},
            401,
            {"error-code": "420", "error-code-label": "topup failed"},
        ),
    ],
)
async def test_refused_top_ups_answer_like_vonage_and_credit_nothing(
    sim: RunningSimulator,
    http: aiohttp.ClientSession,
    form: Any,
    setup: Any,
    status: Any,
    body: Any,
) -> None:
    if setup:
        await control(http, sim, **setup)
    got = await call(http, sim, "POST", "/account/top-up", data=form)
    assert got[:3] == (status, "application/json", body)
    after = await state(http, sim)
    assert (after["balance"], after["topups"]) == (Decimal("100.0"), [])


@pytest.mark.parametrize("casing", ["moCallBackUrl", "moCallbackUrl"])
async def test_settings_accepts_both_callback_casings(
    sim: RunningSimulator, http: aiohttp.ClientSession, casing: Any
) -> None:
    form = {casing: "https://example.com/mo", "drCallBackUrl": "https://example.com/dr"}
    status, ctype, body, _ = await call(http, sim, "POST", "/account/settings", data=form)
    assert (status, ctype) == (200, "application/json")
    assert body == {
        "mo-callback-url": "https://example.com/mo",
        "dr-callback-url": "https://example.com/dr",
        "max-outbound-request": 30,
        "max-inbound-request": 30,
        "max-calls-per-second": 30,
    }


async def test_settings_without_fields_returns_current_and_bad_method_is_400(
    sim: RunningSimulator, http: aiohttp.ClientSession
) -> None:
    await call(http, sim, "POST", "/account/settings", data={"moCallBackUrl": "https://x/mo"})
    status, _, body, _ = await call(http, sim, "POST", "/account/settings", data={})
    assert (status, body["mo-callback-url"]) == (200, "https://x/mo")
    form = {"httpForwardMethod": "PUT"}
    status, _, body, _ = await call(http, sim, "POST", "/account/settings", data=form)
    assert status == 400
    assert "httpForwardMethod" in body["invalid_parameters"]


@pytest.mark.parametrize("auth", [BAD_AUTH, basic_auth("nobody00", DEMO_API_SECRET), None])
@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/account/get-balance"), ("POST", "/account/top-up"), ("POST", "/account/settings")],
)
async def test_rest_auth_failure_is_the_legacy_401(
    sim: RunningSimulator, http: aiohttp.ClientSession, auth: Any, method: Any, path: Any
) -> None:
    got = await call(http, sim, method, path, auth=auth, data={"trx": DEMO_TRX})
    assert got[:3] == (
        401,
        "application/json",
        {"error-code": "401", "error-code-label": "authentication failed"},
    )
    assert (await state(http, sim))["topups"] == []


@pytest.mark.parametrize(("method", "path"), [("GET", SECRETS), ("GET", SUBS), ("POST", TRANSFERS)])
async def test_api_auth_failure_is_an_rfc7807_401(
    sim: RunningSimulator, http: aiohttp.ClientSession, method: Any, path: Any
) -> None:
    status, ctype, body, headers = await call(http, sim, method, path, auth=BAD_AUTH, json={})
    assert (status, ctype) == (401, PROBLEM)
    assert body["type"] == "https://developer.nexmo.com/api-errors#unauthorized"
    assert body["title"] == "Invalid credentials supplied"
    assert body["instance"] == headers["X-Request-Id"]


async def test_a_malformed_authorization_header_is_refused(
    sim: RunningSimulator, http: aiohttp.ClientSession
) -> None:
    headers = {"Authorization": "Basic !!!notbase64"}
    async with http.get(sim.url + "/account/get-balance", headers=headers) as resp:
        assert resp.status == 401


# --- secrets ----------------------------------------------------------------------------------
async def test_secret_lifecycle(sim: RunningSimulator, http: aiohttp.ClientSession) -> None:
    status, ctype, listed, _ = await call(http, sim, "GET", SECRETS)
    assert (status, ctype) == (200, "application/json")
    assert listed["_links"] == {"self": {"href": SECRETS}}
    (first,) = listed["_embedded"]["secrets"]
    assert set(first) == {"_links", "id", "created_at"}
    assert first["created_at"].endswith("Z")

    status, _, created, _ = await call(http, sim, "POST", SECRETS, json={"secret": "Another123"})
    assert status == 201
    assert created["_links"]["self"]["href"] == f"{SECRETS}/{created['id']}"
    assert "secret" not in created
    assert (await call(http, sim, "GET", f"{SECRETS}/{created['id']}"))[:3] == (
        200,
        "application/json",
        created,
    )
    # the new secret authenticates too
    new_auth = basic_auth(DEMO_API_KEY, "Another123")
    assert (await call(http, sim, "GET", "/account/get-balance", auth=new_auth))[0] == 200

    status, _, body, _ = await call(http, sim, "DELETE", f"{SECRETS}/{first['id']}", auth=new_auth)
    assert (status, body) == (204, None)
    assert (await call(http, sim, "GET", "/account/get-balance"))[0] == 401


@pytest.mark.parametrize(
    ("prepare", "method", "path", "json_body", "status", "type_suffix"),
    [
        (True, "POST", SECRETS, {"secret": "Third12345"}, 403, "#add-excess-secret"),
        (False, "DELETE", "FIRST", None, 403, "#delete-last-secret"),
        (False, "POST", SECRETS, {"secret": "weak"}, 400, "secret-management#validation"),
        (False, "GET", f"{SECRETS}/no-such-id", None, 404, "#invalid-id"),
        (False, "GET", "/accounts/unknown1/secrets", None, 404, "#invalid-api-key"),
    ],
)
async def test_secret_refusals_are_problem_json(
    sim: RunningSimulator,
    http: aiohttp.ClientSession,
    prepare: Any,
    method: Any,
    path: Any,
    json_body: Any,
    status: Any,
    type_suffix: Any,
) -> None:
    if prepare:
        await call(http, sim, "POST", SECRETS, json={"secret": "Second1234"})
    if path == "FIRST":
        path = f"{SECRETS}/{sim.account.secrets_of(DEMO_API_KEY).list()[0].id}"
    got_status, ctype, body, _ = await call(http, sim, method, path, json=json_body)
    assert (got_status, ctype) == (status, PROBLEM)
    assert body["type"].endswith(type_suffix)
    assert {"type", "title", "detail", "instance"} <= set(body)
    if status == 400:
        assert body["invalid_parameters"] == [
            {"name": "secret", "reason": "Does not meet complexity requirements"}
        ]


# --- subaccounts and transfers ----------------------------------------------------------------
async def test_subaccounts_list_shows_own_and_shared_balances(
    sim: RunningSimulator, http: aiohttp.ClientSession
) -> None:
    sim.account.add_subaccount("shared01", name="Shared")
    sim.account.add_subaccount("own00001", name="Own", balance=Decimal("5"))
    status, ctype, body, _ = await call(http, sim, "GET", SUBS)
    assert (status, ctype) == (200, "application/json")
    assert body["total_balance"] == Decimal("105.0")
    primary = body["_embedded"]["primary_account"]
    assert (primary["api_key"], primary["balance"]) == (DEMO_API_KEY, Decimal("100.0"))
    subs = {s["api_key"]: s for s in body["_embedded"]["subaccounts"]}
    assert (subs["shared01"]["balance"], subs["shared01"]["credit_limit"]) == (None, None)
    assert subs["shared01"]["use_primary_account_balance"] is True
    assert subs["own00001"]["balance"] == Decimal("5.0")
    one = await call(http, sim, "GET", f"{SUBS}/own00001")
    assert one[2] == subs["own00001"]
    missing = await call(http, sim, "GET", f"{SUBS}/nobody00")
    assert (missing[0], missing[1]) == (404, PROBLEM)


async def test_balance_transfer_moves_money_and_is_listed(
    sim: RunningSimulator, http: aiohttp.ClientSession
) -> None:
    sim.account.add_subaccount("own00001", balance=Decimal("5"))
    request = {"from": DEMO_API_KEY, "to": "own00001", "amount": 12.5, "reference": "May"}
    status, ctype, body, _ = await call(http, sim, "POST", TRANSFERS, json=request)
    assert (status, ctype) == (200, "application/json")
    assert body["masterAccountId"] == DEMO_API_KEY
    assert (body["from"], body["to"], body["amount"], body["reference"]) == (
        DEMO_API_KEY,
        "own00001",
        Decimal("12.5"),
        "May",
    )
    assert (await state(http, sim))["balance"] == Decimal("87.5")
    query = {"start_date": "2000-01-01T00:00:00Z"}
    status, _, listed, _ = await call(http, sim, "GET", TRANSFERS, params=query)
    assert status == 200
    assert [t["id"] for t in listed["_embedded"]["balance_transfers"]] == [body["id"]]


@pytest.mark.parametrize(
    ("request_body", "status", "detail"),
    [
        ({"from": DEMO_API_KEY, "to": "own00001", "amount": 1000}, 403, "Insufficient Credit"),
        ({"from": DEMO_API_KEY, "to": "shared01", "amount": 1}, 403, "only allowed between"),
        ({"from": DEMO_API_KEY, "to": "own00001", "amount": -1}, 422, "validation"),
        ({"from": DEMO_API_KEY, "to": "own00001", "amount": "1"}, 422, "validation"),
    ],
)
async def test_bad_transfers_are_refused(
    sim: RunningSimulator, http: aiohttp.ClientSession, request_body: Any, status: Any, detail: Any
) -> None:
    sim.account.add_subaccount("shared01")
    sim.account.add_subaccount("own00001", balance=Decimal("5"))
    got_status, ctype, body, _ = await call(http, sim, "POST", TRANSFERS, json=request_body)
    assert (got_status, ctype) == (status, PROBLEM)
    assert detail in body["detail"]
    assert (await state(http, sim))["balance"] == Decimal("100.0")


async def test_listing_transfers_without_start_date_is_422(
    sim: RunningSimulator, http: aiohttp.ClientSession
) -> None:
    status, ctype, body, _ = await call(http, sim, "GET", TRANSFERS)
    assert (status, ctype) == (422, PROBLEM)
    assert body["invalid_parameters"] == [{"name": "start_date", "reason": "Is required"}]


# --- faults -----------------------------------------------------------------------------------
async def _top_up_outcome(
    http: aiohttp.ClientSession, sim: RunningSimulator
) -> tuple[int, str, str] | str:
    """What the client saw: (status, content type, body text) or the exception class."""
    try:
        async with http.post(
            sim.url + "/account/top-up",
            data={"trx": DEMO_TRX},
            headers=AUTH,
            timeout=aiohttp.ClientTimeout(total=0.3),
            allow_redirects=False,
        ) as resp:
            return resp.status, resp.content_type, await resp.text()
    except (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError):
        return "disconnected"
    except TimeoutError:
        return "timeout"


@pytest.mark.parametrize(
    ("kind", "seen", "applied"),
    [
        ("error_500_before", (500, PROBLEM), False),
        ("error_500_after", (500, PROBLEM), True),
        ("reset_before", "disconnected", False),
        ("reset_after", "disconnected", True),
        ("timeout_after", "timeout", True),
        ("rate_limit", (429, PROBLEM), False),
        ("malformed_json", (200, "application/json"), True),
        ("html_error", (502, "text/html"), False),
        ("slow", (200, "application/json"), True),
        ("empty_body", (200, "application/json"), True),
        ("huge_body", (200, "application/json"), True),
        ("value_string", (200, "application/json"), True),
        ("value_nan", (200, "application/json"), True),
        ("value_infinity", (200, "application/json"), True),
        ("negative_balance", (200, "application/json"), True),
        ("redirect", (302, "application/octet-stream"), False),
    ],
)
async def test_every_fault_kind_on_top_up(
    sim: RunningSimulator, http: aiohttp.ClientSession, kind: Any, seen: Any, applied: Any
) -> None:
    delay = 5 if kind == "timeout_after" else 0.05
    await fault(http, sim, endpoint="top-up", kind=kind, retry_after=2, delay=delay)
    outcome = await _top_up_outcome(http, sim)
    assert (outcome[:2] if isinstance(outcome, tuple) else outcome) == seen
    after = await state(http, sim)
    assert len(after["topups"]) == (1 if applied else 0)
    assert after["balance"] == Decimal("150.0" if applied else "100.0")
    if kind == "malformed_json":
        assert isinstance(outcome, tuple)
        with pytest.raises(json.JSONDecodeError):
            json.loads(outcome[2])
    # the fault is spent: the next call is normal
    assert after["faults"] == []


@pytest.mark.parametrize(
    ("kind", "body"),
    [
        ("empty_body", ""),
        ("value_string", '{"value": "100.0", "autoReload": true}'),
        ("value_nan", '{"value": NaN, "autoReload": true}'),
        ("value_infinity", '{"value": Infinity, "autoReload": true}'),
        ("negative_balance", '{"value": -100.0, "autoReload": true}'),
    ],
)
async def test_balance_garbage_faults_send_exactly_this_body(
    sim: RunningSimulator, http: aiohttp.ClientSession, kind: str, body: str
) -> None:
    await fault(http, sim, endpoint="get-balance", kind=kind)
    async with http.get(sim.url + "/account/get-balance", headers=AUTH) as resp:
        assert (resp.status, await resp.text()) == (200, body)
    assert (await state(http, sim))["faults"] == []


async def test_huge_body_fault_sends_megabytes(
    sim: RunningSimulator, http: aiohttp.ClientSession
) -> None:
    await fault(http, sim, endpoint="get-balance", kind="huge_body")
    async with http.get(sim.url + "/account/get-balance", headers=AUTH) as resp:
        raw = await resp.read()
    assert len(raw) > 4 * 1024 * 1024
    assert json.loads(raw)["value"] == 100


async def test_redirect_fault_points_elsewhere_and_applies_nothing(
    sim: RunningSimulator, http: aiohttp.ClientSession
) -> None:
    await fault(http, sim, endpoint="get-balance", kind="redirect")
    url = sim.url + "/account/get-balance"
    async with http.get(url, headers=AUTH, allow_redirects=False) as resp:
        assert resp.status == 302
        assert resp.headers["Location"] != url


async def test_rate_limit_says_when_to_retry(
    sim: RunningSimulator, http: aiohttp.ClientSession
) -> None:
    await fault(http, sim, endpoint="get-balance", kind="rate_limit", retry_after=2)
    status, _, body, headers = await call(http, sim, "GET", "/account/get-balance")
    assert (status, headers["Retry-After"]) == (429, "2")
    assert body["title"] == "Rate Limit Hit"


async def test_slow_fault_delays_the_answer(
    sim: RunningSimulator, http: aiohttp.ClientSession
) -> None:
    await fault(http, sim, endpoint="get-balance", kind="slow", delay=0.2)
    started = time.monotonic()
    assert (await call(http, sim, "GET", "/account/get-balance"))[0] == 200
    assert time.monotonic() - started >= 0.2


async def test_fault_count_wildcard_and_clearing(
    sim: RunningSimulator, http: aiohttp.ClientSession
) -> None:
    await fault(http, sim, endpoint="get-balance", kind="error_500_before", count=2)
    active = await fault(http, sim, endpoint="*", kind="html_error", count=5)
    assert [f["endpoint"] for f in active] == ["get-balance", "*"]
    statuses = [(await call(http, sim, "GET", "/account/get-balance"))[0] for _ in range(3)]
    assert statuses == [500, 500, 502]  # the exact endpoint wins, then the wildcard
    assert (await call(http, sim, "GET", SECRETS))[0] == 502
    status, _, body, _ = await call(http, sim, "DELETE", "/_sim/faults", auth=None)
    assert (status, body) == (200, {"faults": []})
    assert (await call(http, sim, "GET", SECRETS))[0] == 200


@pytest.mark.parametrize(
    "spec",
    [
        {"endpoint": "top-up", "kind": "explode"},
        {"endpoint": "nowhere", "kind": "slow"},
        {"endpoint": "top-up", "kind": "slow", "count": 0},
        {"endpoint": "top-up", "kind": "slow", "colour": "red"},
    ],
)
async def test_invalid_faults_are_rejected(
    sim: RunningSimulator, http: aiohttp.ClientSession, spec: Any
) -> None:
    status, _, body, _ = await call(http, sim, "POST", "/_sim/faults", json=spec, auth=None)
    assert status == 400
    assert body["error"]


# --- control and state ------------------------------------------------------------------------
async def test_state_counts_calls_by_endpoint_and_status(
    sim: RunningSimulator, http: aiohttp.ClientSession
) -> None:
    await call(http, sim, "GET", "/account/get-balance")
    await call(http, sim, "GET", "/account/get-balance", auth=BAD_AUTH)
    await top_up(http, sim)
    calls = (await state(http, sim))["calls"]
    assert calls == {"get-balance": {"200": 1, "401": 1}, "top-up": {"200": 1}}


async def test_control_rejects_unknown_keys(
    sim: RunningSimulator, http: aiohttp.ClientSession
) -> None:
    status, _, body, _ = await call(http, sim, "POST", "/_sim/control", json={"x": 1}, auth=None)
    assert status == 400
    assert "unknown key 'x'" in body["error"]


async def test_simulated_time_runs_at_speed_and_spend_is_consumed() -> None:
    clock = VirtualClock()
    sim = await start_simulator(
        port=0, scenario=QUIET_SCENARIO, credentials=DEMO_CREDENTIALS, speed=60.0, clock=clock
    )
    try:
        async with aiohttp.ClientSession() as http:
            await control(http, sim, spend_rate="0.075")  # 10 messages/s
            clock.advance(1.0)  # one real second = one simulated minute
            body = await state(http, sim)
            assert body["t"] == pytest.approx(60.0)
            assert body["served_events"] == 600
            assert body["balance"] == Decimal("95.5")
    finally:
        await sim.stop()


async def test_stop_does_not_wait_for_a_request_held_open(
    sim: RunningSimulator, http: aiohttp.ClientSession
) -> None:
    await fault(http, sim, endpoint="get-balance", kind="timeout_after", delay=30)
    pending = asyncio.ensure_future(call(http, sim, "GET", "/account/get-balance"))
    await asyncio.sleep(0.1)
    started = time.monotonic()
    await sim.stop()
    assert time.monotonic() - started < 2
    with pytest.raises(aiohttp.ClientError):
        await pending
