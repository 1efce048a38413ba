"""VonageClient against aioresponses: what goes on the wire, and what every answer becomes."""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import AsyncIterator, Iterator
from decimal import Decimal
from types import SimpleNamespace
from typing import Any

import aiohttp
import pytest
from aioresponses import aioresponses
from yarl import URL

from topup_guard.errors import (
    AuthenticationError,
    AutoReloadDisabledError,
    InvalidSecretError,
    MalformedResponseError,
    OutcomeUnknownError,
    RateLimitedError,
    RequestNotSentError,
    ServerError,
    TopupGuardError,
    TopUpRefusedError,
    VonageError,
)
from topup_guard.model import Balance, Secret
from topup_guard.vonage import CallRecord, VonageClient

KEY = "abcd1234"
SECRET = "Sup3rS3cretValue"
TRX = "8ef2447e69604f642ae59363aa5f781b"
REST = "https://rest.nexmo.com"
API = "https://api.nexmo.com"
BALANCE_URL = f"{REST}/account/get-balance"
TOP_UP_URL = f"{REST}/account/top-up"
BASIC = "Basic " + base64.b64encode(f"{KEY}:{SECRET}".encode()).decode()
SECRET_OBJ = {"id": "ad6dc56f", "created_at": "2017-03-02T16:34:49Z"}
TRANSFER = {"id": "t-1", "from": KEY, "to": "sub1", "amount": 1.25, "reference": "r"}


@pytest.fixture
def mocked() -> Iterator[aioresponses]:
    with aioresponses() as m:
        yield m


@pytest.fixture
def records() -> list[CallRecord]:
    return []


@pytest.fixture
async def client(records: list[CallRecord]) -> AsyncIterator[VonageClient]:
    async with VonageClient(KEY, SECRET, observer=records.append) as vonage:
        yield vonage


def only_request(m: aioresponses) -> tuple[str, URL, dict[str, Any]]:
    """The single request sent, after checking that credentials went in the header only."""
    calls = [(method, url, call.kwargs) for (method, url), cs in m.requests.items() for call in cs]
    assert len(calls) == 1, calls
    method, url, kwargs = calls[0]
    assert kwargs["headers"]["Authorization"] == BASIC
    assert kwargs["headers"]["Accept"] == "application/json"
    assert kwargs["allow_redirects"] is False
    data = kwargs.get("data") or b""
    for leak in (SECRET, BASIC.split()[1]):
        assert leak not in str(url)
        assert leak.encode() not in data
    assert KEY not in url.query_string
    return method, url, kwargs


# --- requests on the wire --------------------------------------------------------------------


async def test_get_balance_sends_basic_auth_and_parses_decimal(
    client: VonageClient, mocked: aioresponses
) -> None:
    mocked.get(
        BALANCE_URL,
        body=b'{"value": 29.18202293, "autoReload": true}',
        headers={"X-Request-Id": "req-1"},
    )
    balance = await client.get_balance()
    assert balance == Balance(Decimal("29.18202293"), True, "req-1")
    method, url, kwargs = only_request(mocked)
    assert (method, url) == ("GET", URL(BALANCE_URL))
    assert kwargs["data"] is None


async def test_top_up_posts_trx_form_encoded(client: VonageClient, mocked: aioresponses) -> None:
    mocked.post(TOP_UP_URL, payload={"error-code": "200", "error-code-label": "success"})
    assert await client.top_up(TRX) is None
    method, url, kwargs = only_request(mocked)
    assert (method, url) == ("POST", URL(TOP_UP_URL))
    assert kwargs["data"] == f"trx={TRX}".encode()
    assert kwargs["headers"]["Content-Type"] == "application/x-www-form-urlencoded"


async def test_get_settings_posts_an_empty_form(client: VonageClient, mocked: aioresponses) -> None:
    mocked.post(f"{REST}/account/settings", payload={"max-calls-per-second": 30})
    settings = await client.get_settings()
    assert settings.max_calls_per_second == 30
    method, _, kwargs = only_request(mocked)
    assert method == "POST"
    assert kwargs["data"] == b""


async def test_update_settings_uses_spec_field_casing(
    client: VonageClient, mocked: aioresponses
) -> None:
    mocked.post(f"{REST}/account/settings", payload={"mo-callback-url": "https://e/mo"})
    await client.update_settings(mo_callback_url="https://e/mo", http_forward_method="POST_JSON")
    _, _, kwargs = only_request(mocked)
    assert kwargs["data"] == b"moCallBackUrl=https%3A%2F%2Fe%2Fmo&httpForwardMethod=POST_JSON"


async def test_secret_operations_use_api_host_and_json(
    client: VonageClient, mocked: aioresponses
) -> None:
    base = f"{API}/accounts/{KEY}/secrets"
    mocked.post(base, status=201, payload=SECRET_OBJ)
    assert await client.create_secret("NewS3cretX") == Secret("ad6dc56f", "2017-03-02T16:34:49Z")
    method, url, kwargs = only_request(mocked)
    assert (method, url) == ("POST", URL(base))
    assert json.loads(kwargs["data"]) == {"secret": "NewS3cretX"}
    assert kwargs["headers"]["Content-Type"] == "application/json"

    mocked.requests.clear()
    mocked.get(f"{API}/accounts/sub1/secrets", payload={"_embedded": {"secrets": [SECRET_OBJ]}})
    assert len(await client.list_secrets("sub1")) == 1
    mocked.get(f"{base}/ad6dc56f", payload=SECRET_OBJ)
    assert (await client.get_secret("ad6dc56f")).id == "ad6dc56f"
    mocked.delete(f"{base}/ad6dc56f", status=204)
    assert await client.revoke_secret("ad6dc56f") is None
    mocked.get(f"{base}/a%2Fb", payload=SECRET_OBJ)
    await client.get_secret("a/b")  # an id cannot change the path
    assert ("GET", URL(f"{base}/a%2Fb", encoded=True)) in mocked.requests


async def test_weak_secret_is_refused_before_sending_and_not_echoed(
    client: VonageClient, mocked: aioresponses, records: list[CallRecord]
) -> None:
    with pytest.raises(InvalidSecretError) as caught:
        await client.create_secret("weakpass")
    assert "weakpass" not in str(caught.value)
    assert not mocked.requests
    assert records == []


async def test_subaccounts_and_transfers(client: VonageClient, mocked: aioresponses) -> None:
    accounts = f"{API}/accounts/{KEY}"
    primary = {"api_key": KEY, "balance": 10.5, "credit_limit": 0}
    mocked.get(f"{accounts}/subaccounts", payload={"_embedded": {"primary_account": primary}})
    overview = await client.list_subaccounts()
    assert overview.primary.balance == Decimal("10.5")
    assert overview.total_balance is None
    mocked.get(f"{accounts}/subaccounts/sub1", payload={"api_key": "sub1", "balance": None})
    assert (await client.get_subaccount("sub1")).balance is None

    mocked.requests.clear()
    mocked.post(f"{accounts}/balance-transfers", payload=TRANSFER)
    transfer = await client.transfer_balance(KEY, "sub1", Decimal("1.25"), "r")
    assert transfer.amount == Decimal("1.25")
    _, _, kwargs = only_request(mocked)
    assert json.loads(kwargs["data"], parse_float=Decimal) == {
        "from": KEY,
        "to": "sub1",
        "amount": Decimal("1.25"),
        "reference": "r",
    }

    listing = f"{accounts}/balance-transfers?start_date=2026-01-01T00:00:00Z&subaccount=sub1"
    mocked.get(listing, payload={"_embedded": {"balance_transfers": [TRANSFER]}})
    found = await client.list_balance_transfers("2026-01-01T00:00:00Z", subaccount="sub1")
    assert [t.id for t in found] == ["t-1"]


# --- answers that are errors -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        pytest.param(
            {"status": 200, "body": b'{"value": "10.28"}'}, MalformedResponseError, id="str"
        ),
        pytest.param(
            {"status": 200, "body": b'{"autoReload": true}'}, MalformedResponseError, id="no-value"
        ),
        pytest.param({"status": 200, "body": b'{"value": NaN}'}, MalformedResponseError, id="nan"),
        pytest.param({"status": 200, "body": b"<html></html>"}, MalformedResponseError, id="html"),
        pytest.param({"status": 200, "body": b""}, MalformedResponseError, id="empty"),
        pytest.param(
            {"status": 302, "headers": {"Location": "https://elsewhere.example/"}},
            MalformedResponseError,
            id="redirect",
        ),
        pytest.param(
            {
                "status": 200,
                "payload": {"error-code": "401", "error-code-label": "authentication failed"},
            },
            AuthenticationError,
            id="legacy-error-under-200",
        ),
        pytest.param(
            {
                "status": 401,
                "payload": {"error-code": "401", "error-code-label": "authentication failed"},
            },
            AuthenticationError,
            id="401",
        ),
        pytest.param({"status": 502, "body": b"<html>gw</html>"}, ServerError, id="502-html"),
    ],
)
async def test_balance_errors(
    client: VonageClient, mocked: aioresponses, kwargs: dict[str, Any], expected: type[Exception]
) -> None:
    mocked.get(BALANCE_URL, **kwargs)
    with pytest.raises(VonageError) as caught:
        await client.get_balance()
    assert type(caught.value) is expected


async def test_redirect_is_not_followed(client: VonageClient, mocked: aioresponses) -> None:
    mocked.get(BALANCE_URL, status=302, headers={"Location": "https://evil.example/b"})
    mocked.get("https://evil.example/b", payload={"value": 1})
    with pytest.raises(MalformedResponseError, match="redirect"):
        await client.get_balance()
    assert ("GET", URL("https://evil.example/b")) not in mocked.requests


async def test_oversized_body_is_not_buffered(client: VonageClient, mocked: aioresponses) -> None:
    mocked.get(BALANCE_URL, body=b'{"value": 1, "pad": "' + b"x" * (1 << 20) + b'"}')
    with pytest.raises(MalformedResponseError, match="too large"):
        await client.get_balance()


async def test_rate_limit_carries_retry_after(client: VonageClient, mocked: aioresponses) -> None:
    mocked.get(BALANCE_URL, status=429, body=b"Too Many", headers={"Retry-After": "12"})
    with pytest.raises(RateLimitedError) as caught:
        await client.get_balance()
    assert caught.value.retry_after == 12.0


@pytest.mark.parametrize(
    ("status", "payload", "expected"),
    [
        (
            401,
            {"error-code": "401", "error-code-label": "not auto-reload enabled"},
            AutoReloadDisabledError,
        ),
        (401, {"error-code": "420", "error-code-label": "topup failed"}, TopUpRefusedError),
        (200, {"error-code": "420", "error-code-label": "topup failed"}, TopUpRefusedError),
        (200, {"error-code": "500", "error-code-label": "internal"}, MalformedResponseError),
        (500, {"title": "Internal Error"}, ServerError),
    ],
)
async def test_top_up_refusals_and_text_hide_trx_and_secret(
    client: VonageClient,
    mocked: aioresponses,
    status: int,
    payload: dict[str, str],
    expected: type[Exception],
) -> None:
    mocked.post(TOP_UP_URL, status=status, payload=payload)
    with pytest.raises(VonageError) as caught:
        await client.top_up(TRX)
    assert type(caught.value) is expected
    text = f"{caught.value} {caught.value!r} {caught.value.args}"
    for leak in (TRX, SECRET, BASIC):
        assert leak not in text
    assert str(caught.value).startswith("POST /account/top-up: ")


# --- transport failures ----------------------------------------------------------------------

_CONN_KEY = SimpleNamespace(host="rest.nexmo.com", port=443, ssl=True)


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        pytest.param(
            aiohttp.ClientConnectorError(_CONN_KEY, ConnectionRefusedError(111, "refused")),  # type: ignore[arg-type]
            RequestNotSentError,
            id="refused",
        ),
        pytest.param(
            aiohttp.ClientConnectorDNSError(_CONN_KEY, OSError(-2, "Name or service not known")),  # type: ignore[arg-type]
            RequestNotSentError,
            id="dns",
        ),
        pytest.param(aiohttp.ConnectionTimeoutError(), RequestNotSentError, id="connect-timeout"),
        pytest.param(aiohttp.ServerDisconnectedError(), OutcomeUnknownError, id="disconnect"),
        pytest.param(aiohttp.ClientOSError(104, "reset by peer"), OutcomeUnknownError, id="reset"),
        pytest.param(aiohttp.ClientPayloadError("truncated"), OutcomeUnknownError, id="payload"),
        pytest.param(aiohttp.SocketTimeoutError(), OutcomeUnknownError, id="read-timeout"),
        pytest.param(TimeoutError(), OutcomeUnknownError, id="total-timeout"),
    ],
)
async def test_transport_failures_say_whether_the_request_left(
    client: VonageClient,
    mocked: aioresponses,
    records: list[CallRecord],
    exc: Exception,
    expected: type[Exception],
) -> None:
    mocked.post(TOP_UP_URL, exception=exc)
    with pytest.raises(VonageError) as caught:
        await client.top_up(TRX)
    assert type(caught.value) is expected
    assert caught.value.__cause__ is None
    assert not isinstance(caught.value, aiohttp.ClientError)
    assert TRX not in str(caught.value)
    assert records[-1].outcome == expected.__name__
    assert records[-1].status is None


# --- observer, repr, lifecycle ---------------------------------------------------------------


async def test_observer_gets_one_record_per_call_without_secrets(
    client: VonageClient, mocked: aioresponses, records: list[CallRecord]
) -> None:
    mocked.get(BALANCE_URL, payload={"value": 5}, headers={"X-Request-Id": "r-7"})
    mocked.post(TOP_UP_URL, status=401, payload={"error-code-label": "not auto-reload enabled"})
    await client.get_balance()
    with pytest.raises(AutoReloadDisabledError):
        await client.top_up(TRX)
    assert [(r.endpoint, r.method, r.status, r.outcome) for r in records] == [
        ("get-balance", "GET", 200, "ok"),
        ("top-up", "POST", 401, "AutoReloadDisabledError"),
    ]
    assert records[0].request_id == "r-7"
    assert all(r.duration_s >= 0 for r in records)
    assert all(TRX not in repr(r) and SECRET not in repr(r) for r in records)


async def test_a_failing_observer_never_fails_the_call(
    mocked: aioresponses, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(record: CallRecord) -> None:
        raise RuntimeError("telemetry down")

    mocked.post(TOP_UP_URL, payload={"error-code": "200"})
    async with VonageClient(KEY, SECRET, observer=broken) as vonage:
        with caplog.at_level(logging.ERROR):
            await vonage.top_up(TRX)
    assert "observer failed" in caplog.text


async def test_repr_and_vars_never_show_the_secret() -> None:
    vonage = VonageClient(KEY, SECRET, rest_url="http://127.0.0.1:8080/")
    text = repr(vonage) + repr({s: getattr(vonage, s) for s in vars(vonage)})
    assert KEY in repr(vonage)
    assert "http://127.0.0.1:8080" in repr(vonage)
    assert SECRET not in text
    assert BASIC.split()[1] not in text
    await vonage.close()


@pytest.mark.parametrize(
    "url",
    ["ftp://rest.nexmo.com", "https://k:s@rest.nexmo.com", "https://rest.nexmo.com/?api_secret=x"],
)
def test_refuses_base_urls_that_could_leak(url: str) -> None:
    with pytest.raises(ValueError, match="rest_url"):
        VonageClient(KEY, SECRET, rest_url=url)


async def test_closes_only_the_session_it_created(mocked: aioresponses) -> None:
    mocked.get(BALANCE_URL, payload={"value": 1})
    async with aiohttp.ClientSession() as session:
        async with VonageClient(KEY, SECRET, session=session) as vonage:
            await vonage.get_balance()
        assert not session.closed
    own = VonageClient(KEY, SECRET)
    async with own:
        created = own._get_session()
    assert created.closed
    with pytest.raises(RuntimeError, match="closed"):
        await own.get_balance()


async def test_exceptions_are_all_in_the_tree(client: VonageClient, mocked: aioresponses) -> None:
    mocked.get(BALANCE_URL, exception=aiohttp.ClientError("anything else"))
    with pytest.raises(TopupGuardError):
        await client.get_balance()
