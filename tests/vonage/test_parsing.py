"""Every response shape of docs/vonage-account-api.md, parsed or mapped without any HTTP."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from email.utils import format_datetime

import pytest

from topup_guard.errors import (
    ApiError,
    AuthenticationError,
    AutoReloadDisabledError,
    ForbiddenError,
    MalformedResponseError,
    NotFoundError,
    RateLimitedError,
    ServerError,
    TopUpRefusedError,
    ValidationError,
    VonageError,
)
from topup_guard.model import Balance, Secret
from topup_guard.vonage import errormap, parsing, payloads
from topup_guard.vonage.parsing import Exchange, Response

BALANCE = Exchange("GET", "/account/get-balance")
TOP_UP = Exchange("POST", "/account/top-up")
SECRETS = Exchange("POST", "/accounts/abcd1234/secrets")
TRX = "8ef2447e69604f642ae59363aa5f781b"


def _resp(status: int, body: object = b"", headers: dict[str, str] | None = None) -> Response:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return Response(status, headers or {}, raw)


def _balance(resp: Response) -> Balance:
    ctx = Exchange(BALANCE.method, BALANCE.path, resp.status, resp.request_id)
    doc = errormap.check(resp, ctx, endpoint="get-balance")
    return parsing.parse_balance(doc, ctx)


def _top_up(resp: Response) -> None:
    ctx = Exchange(TOP_UP.method, TOP_UP.path, resp.status, resp.request_id)
    doc = errormap.check(resp, ctx, endpoint="top-up", redact=(TRX,))
    parsing.parse_top_up(doc, ctx)


# --- balance ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "value", "auto_reload"),
    [
        pytest.param(b'{"value": 10.28, "autoReload": false}', "10.28", False, id="spec-example"),
        pytest.param(b'{"value": 29.18202293, "autoReload": true}', "29.18202293", True, id="py4"),
        pytest.param(b'{"value": 24.428075}', "24.428075", None, id="autoreload-absent"),
        pytest.param(b'{"value": 10, "autoReload": null}', "10", None, id="int-and-null"),
        pytest.param(b'{"value": -12.5, "autoReload": false}', "-12.5", False, id="postpaid"),
        pytest.param(b'{"value": 1.5e2}', "1.5E+2", None, id="exponent"),
        pytest.param(b'\xef\xbb\xbf{"value": 2.0}', "2.0", None, id="utf8-bom"),
    ],
)
def test_parses_balance_as_exact_decimal(body: bytes, value: str, auto_reload: bool | None) -> None:
    balance = _balance(_resp(200, body, {"X-Request-Id": "req-1"}))
    assert balance == Balance(Decimal(value), auto_reload, "req-1")
    assert isinstance(balance.value, Decimal)
    assert balance.value.as_tuple() == Decimal(value).as_tuple()  # digits kept, no float


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        pytest.param(200, b'{"value": "10.28"}', MalformedResponseError, id="value-string"),
        pytest.param(200, b'{"value": true}', MalformedResponseError, id="value-bool"),
        pytest.param(200, b'{"value": null}', MalformedResponseError, id="value-null"),
        pytest.param(200, b'{"autoReload": true}', MalformedResponseError, id="value-missing"),
        pytest.param(200, b'{"value": NaN}', MalformedResponseError, id="value-nan"),
        pytest.param(200, b'{"value": Infinity}', MalformedResponseError, id="value-infinity"),
        pytest.param(200, b'{"value": -Infinity}', MalformedResponseError, id="value-neg-inf"),
        pytest.param(200, b'{"value": 1, "autoReload": "no"}', MalformedResponseError, id="ar"),
        pytest.param(200, b"[10.28]", MalformedResponseError, id="json-array"),
        pytest.param(200, b"10.28", MalformedResponseError, id="bare-number"),
        pytest.param(200, b"", MalformedResponseError, id="empty"),
        pytest.param(200, b"<html>ok</html>", MalformedResponseError, id="html"),
        pytest.param(200, b'{"value": 10.2', MalformedResponseError, id="truncated-json"),
        pytest.param(
            200, b"<response><value>1</value></response>", MalformedResponseError, id="xml"
        ),
        pytest.param(201, b'{"value": 10.28}', MalformedResponseError, id="unexpected-2xx"),
        pytest.param(302, b'{"value": 10.28}', MalformedResponseError, id="redirect"),
        pytest.param(
            200,
            b'{"error-code": "401", "error-code-label": "authentication failed"}',
            AuthenticationError,
            id="legacy-401-under-200",
        ),
        pytest.param(
            200,
            b'{"value": 10, "error-code": "401", "error-code-label": "authentication failed"}',
            AuthenticationError,
            id="error-code-beats-value",
        ),
        pytest.param(200, b'{"error-code": "500"}', ServerError, id="legacy-500-under-200"),
        pytest.param(200, b'{"error-code": "9", "error-code-label": "x"}', ApiError, id="code-9"),
        pytest.param(
            200,
            b'{"type": "https://developer.nexmo.com/api-errors#unauthorized", "title": "Unauth"}',
            ApiError,
            id="rfc7807-under-200",
        ),
        pytest.param(
            401,
            b'{"error-code": "401", "error-code-label": "authentication failed"}',
            AuthenticationError,
            id="legacy-401",
        ),
        pytest.param(
            401,
            b'{"type": "https://developer.nexmo.com/api-errors#unauthorized", "title": '
            b'"Unauthorized", "detail": "You did not provide correct credentials.", '
            b'"instance": "797a8f199c45014ab7b08bfe9cc1c12c"}',
            AuthenticationError,
            id="rfc7807-401",
        ),
        pytest.param(401, b"<html>401</html>", MalformedResponseError, id="html-401"),
        pytest.param(404, b"", MalformedResponseError, id="empty-404"),
        pytest.param(
            404,
            b'{"type": "https://developer.nexmo.com/api-errors#invalid-api-key", '
            b'"title": "Invalid API Key"}',
            NotFoundError,
            id="rfc7807-404",
        ),
        pytest.param(403, b'{"title": "Forbidden"}', ForbiddenError, id="rfc7807-403"),
        pytest.param(422, b'{"title": "Unprocessable"}', ValidationError, id="rfc7807-422"),
        pytest.param(405, b'{"title": "Method Not Allowed"}', ApiError, id="other-4xx"),
        pytest.param(429, b'{"title": "Rate Limit Hit"}', RateLimitedError, id="rfc7807-429"),
        pytest.param(429, b"Too Many Requests", RateLimitedError, id="text-429"),
        pytest.param(500, b'{"title": "Internal Error"}', ServerError, id="rfc7807-500"),
        pytest.param(502, b"<html>Bad Gateway</html>", ServerError, id="html-502"),
        pytest.param(503, b"", ServerError, id="empty-503"),
    ],
)
def test_never_takes_an_odd_answer_for_a_balance(
    status: int, body: bytes, expected: type[VonageError]
) -> None:
    with pytest.raises(VonageError) as caught:
        _balance(_resp(status, body, {"X-Request-Id": "req-9"}))
    assert type(caught.value) is expected
    assert caught.value.status == status
    assert caught.value.request_id == "req-9"
    assert str(caught.value).startswith("GET /account/get-balance: ")
    assert str(caught.value).endswith(f"(HTTP {status})")


def test_huge_balance_body_is_malformed_but_huge_5xx_is_still_server_error() -> None:
    with pytest.raises(MalformedResponseError, match="too large"):
        _balance(Response(200, {}, b"", too_large=True))
    with pytest.raises(ServerError, match="too large"):
        _balance(Response(500, {}, b"", too_large=True))


def test_messages_use_vonage_words_in_one_shape() -> None:
    legacy = _resp(401, {"error-code": "401", "error-code-label": "authentication failed"})
    with pytest.raises(AuthenticationError) as caught:
        _balance(legacy)
    assert str(caught.value) == "GET /account/get-balance: authentication failed (HTTP 401)"
    assert caught.value.code == "401"

    problem = _resp(
        403,
        {
            "type": "https://developer.nexmo.com/api-errors/account/secret-management#add-excess-secret",
            "title": "Secret Addition Forbidden",
            "detail": "Account reached maximum number [2] of allowed secrets",
            "instance": "797a8f199c45014ab7b08bfe9cc1c12c",
        },
    )
    with pytest.raises(ForbiddenError) as forbidden:
        errormap.check(problem, Exchange("POST", SECRETS.path, 403), endpoint="secrets")
    assert str(forbidden.value) == (
        "POST /accounts/abcd1234/secrets: Secret Addition Forbidden: "
        "Account reached maximum number [2] of allowed secrets (HTTP 403)"
    )
    assert forbidden.value.code == "add-excess-secret"


def test_server_text_is_one_bounded_line() -> None:
    resp = _resp(500, {"title": "bad\r\nInjected: header\t" + "x" * 500})
    with pytest.raises(ServerError) as caught:
        _balance(resp)
    text = str(caught.value)
    assert not set(text) & {"\n", "\r", "\t"}
    assert len(text) < 300


# --- top-up ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        pytest.param({"error-code": "200", "error-code-label": "success"}, id="spec"),
        pytest.param({"error-code": 200, "error-code-label": "success"}, id="numeric-200"),
    ],
)
def test_top_up_succeeds_only_on_200_with_error_code_200(body: object) -> None:
    assert _top_up(_resp(200, body)) is None


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        pytest.param(
            401,
            {"error-code": "401", "error-code-label": "not auto-reload enabled"},
            AutoReloadDisabledError,
            id="auto-reload-off",
        ),
        pytest.param(
            200,
            {"error-code": "401", "error-code-label": "Not Auto-Reload Enabled"},
            AutoReloadDisabledError,
            id="auto-reload-off-under-200",
        ),
        pytest.param(
            401,
            {"error-code": "420", "error-code-label": "topup failed"},
            TopUpRefusedError,
            id="java-topup-failed",
        ),
        pytest.param(500, {"error-code": "420"}, TopUpRefusedError, id="420-any-status"),
        pytest.param(400, {"error-code-label": "topup failed"}, TopUpRefusedError, id="label"),
        pytest.param(200, {"error-code": "420"}, TopUpRefusedError, id="200-with-420"),
        pytest.param(
            200,
            {"error-code": "401", "error-code-label": "authentication failed"},
            AuthenticationError,
            id="200-with-401",
        ),
        pytest.param(200, {"title": "Bad"}, MalformedResponseError, id="200-with-problem"),
        pytest.param(
            200,
            {"error-code": "500", "error-code-label": "Internal"},
            MalformedResponseError,
            id="200-with-500-is-ambiguous",
        ),
        pytest.param(
            401,
            {"error-code": "401", "error-code-label": "authentication failed"},
            AuthenticationError,
            id="auth-failed",
        ),
        pytest.param(
            400,
            {
                "type": "BAD_REQUEST",
                "error_title": "Bad Request",
                "invalid_parameters": {"trx": "Is required."},
            },
            ValidationError,
            id="php-missing-trx",
        ),
        pytest.param(429, b"", RateLimitedError, id="429"),
        pytest.param(500, {"title": "Internal Error"}, ServerError, id="500"),
        pytest.param(200, b"", MalformedResponseError, id="empty-200"),
        pytest.param(200, {}, MalformedResponseError, id="empty-object"),
        pytest.param(200, {"error-code-label": "success"}, MalformedResponseError, id="no-code"),
        pytest.param(204, b"", MalformedResponseError, id="204"),
        pytest.param(302, b"", MalformedResponseError, id="redirect"),
    ],
)
def test_top_up_failures_map_onto_the_tree(
    status: int, body: object, expected: type[VonageError]
) -> None:
    with pytest.raises(VonageError) as caught:
        _top_up(_resp(status, body))
    assert type(caught.value) is expected


def test_validation_error_carries_parameters_in_both_shapes() -> None:
    php = _resp(400, {"error_title": "Bad Request", "invalid_parameters": {"trx": "Is required."}})
    with pytest.raises(ValidationError) as dict_shape:
        _top_up(php)
    assert dict_shape.value.invalid_parameters == {"trx": "Is required."}
    assert dict_shape.value.code is None
    assert str(dict_shape.value) == (
        "POST /account/top-up: Bad Request [trx: Is required.] (HTTP 400)"
    )

    spec = _resp(
        400,
        {
            "type": "https://developer.nexmo.com/api-errors/account/secret-management#validation",
            "title": "Bad Request",
            "invalid_parameters": [
                {"name": "secret", "reason": "Does not meet complexity requirements"}
            ],
        },
    )
    with pytest.raises(ValidationError) as list_shape:
        errormap.check(spec, Exchange("POST", SECRETS.path, 400), endpoint="secrets")
    assert list_shape.value.invalid_parameters == {
        "secret": "Does not meet complexity requirements"
    }
    assert list_shape.value.code == "validation"


def test_error_text_never_echoes_the_trx_or_secret() -> None:
    echo = _resp(
        400,
        {"title": f"trx {TRX} unknown", "invalid_parameters": [{"name": "trx", "reason": TRX}]},
    )
    with pytest.raises(ValidationError) as caught:
        _top_up(echo)
    assert TRX not in str(caught.value)
    assert TRX not in repr(caught.value.invalid_parameters)
    assert "***" in str(caught.value)

    text_body = Response(503, {}, f"upstream rejected trx={TRX}".encode())
    with pytest.raises(ServerError) as server:
        errormap.check(text_body, TOP_UP, endpoint="top-up", redact=(TRX,))
    assert TRX not in str(server.value)


# --- Retry-After -----------------------------------------------------------------------------

NOW = 1_800_000_000.0


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        pytest.param("7", 7.0, id="seconds"),
        pytest.param(" 120 ", 120.0, id="spaces"),
        pytest.param("1.5", 1.5, id="fraction"),
        pytest.param(
            format_datetime(datetime.fromtimestamp(NOW + 30, UTC), usegmt=True), 30.0, id="date"
        ),
        pytest.param(
            format_datetime(datetime.fromtimestamp(NOW - 30, UTC), usegmt=True), 0.0, id="past"
        ),
        pytest.param(None, None, id="absent"),
        pytest.param("", None, id="empty"),
        pytest.param("soon", None, id="garbage"),
        pytest.param("-5", None, id="negative"),
        pytest.param("inf", None, id="inf"),
        pytest.param("nan", None, id="nan"),
        pytest.param("Wed, 21 Oct 2015 07:28:00", None, id="date-without-zone"),
    ],
)
def test_parses_retry_after(header: str | None, expected: float | None) -> None:
    assert errormap.parse_retry_after(header, NOW) == expected


def test_rate_limited_error_carries_retry_after() -> None:
    resp = Response(429, {"Retry-After": "3"}, b"<html>slow down</html>")
    with pytest.raises(RateLimitedError) as caught:
        errormap.check(resp, BALANCE, endpoint="get-balance", now=NOW)
    assert caught.value.retry_after == 3.0


# --- JSON decoding ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b'{"a": 1}', {"a": Decimal(1)}),
        (b'{"a": 0.1}', {"a": Decimal("0.1")}),
        (b"[]", []),
        (b"", None),
        (b"  \n", None),
        (b"{", None),
        (b'{"a": NaN}', None),
        (b"\xff\xfe\x00", None),
    ],
)
def test_decodes_json_numbers_as_decimal_and_refuses_non_json(
    body: bytes, expected: object
) -> None:
    assert parsing.decode_json(body) == expected


# --- settings, secrets, subaccounts, transfers -----------------------------------------------

CTX = Exchange("GET", "/x", 200)


def _doc(obj: object) -> object:
    return parsing.decode_json(json.dumps(obj).encode())


def test_parses_settings_with_rate_cap() -> None:
    doc = _doc(
        {
            "mo-callback-url": "https://example.com/mo",
            "dr-callback-url": "",
            "max-outbound-request": 30,
            "max-inbound-request": 30,
            "max-calls-per-second": 30,
        }
    )
    settings = parsing.parse_settings(doc, CTX)
    assert settings.mo_callback_url == "https://example.com/mo"
    assert settings.dr_callback_url == ""
    assert (settings.max_outbound_request, settings.max_calls_per_second) == (30, 30)
    camel = parsing.parse_settings(_doc({"moCallbackUrl": "https://e/mo"}), CTX)
    assert camel.mo_callback_url == "https://e/mo"
    assert camel.max_calls_per_second is None


SECRET = {
    "_links": {"self": {"href": "/accounts/abcd1234/secrets/ad6dc56f"}},
    "id": "ad6dc56f-07b5-46e1-a527-85530e625800",
    "created_at": "2017-03-02T16:34:49Z",
}


def test_parses_secrets_collection_and_object() -> None:
    expected = Secret("ad6dc56f-07b5-46e1-a527-85530e625800", "2017-03-02T16:34:49Z")
    assert parsing.parse_secret(_doc(SECRET), CTX) == expected
    listing = {"_links": {}, "_embedded": {"secrets": [SECRET, SECRET]}}
    assert parsing.parse_secrets(_doc(listing), CTX) == [expected, expected]
    assert parsing.parse_secrets(_doc({"_links": {}}), CTX) == []
    with pytest.raises(MalformedResponseError, match="'id'"):
        parsing.parse_secret(_doc({"created_at": "x"}), CTX)
    with pytest.raises(MalformedResponseError, match="not a list"):
        parsing.parse_secrets(_doc({"_embedded": {"secrets": {}}}), CTX)


SUBACCOUNTS = {
    "_links": {"self": {"href": "/accounts/KEY/subaccounts"}},
    "total_balance": 29.6672,
    "total_credit_limit": 0.0,
    "_embedded": {
        "primary_account": {
            "api_key": "KEY",
            "name": None,
            "balance": 27.4572,
            "credit_limit": 0.0,
            "suspended": False,
            "created_at": "2024-08-28T02:02:14.626Z",
        },
        "subaccounts": [
            {
                "api_key": "qwer1234",
                "primary_account_api_key": "KEY",
                "use_primary_account_balance": False,
                "name": "own",
                "balance": 0.5,
                "credit_limit": -100.25,
                "suspended": False,
                "created_at": "2024-08-28T02:02:14.626Z",
            },
            {
                "api_key": "shared12",
                "use_primary_account_balance": True,
                "name": "shared",
                "balance": None,
                "credit_limit": None,
                "suspended": True,
            },
        ],
    },
}


def test_parses_subaccounts_with_shared_balances_and_optional_totals() -> None:
    overview = parsing.parse_subaccounts(_doc(SUBACCOUNTS), CTX)
    assert overview.primary.api_key == "KEY"
    assert overview.primary.name is None
    assert overview.primary.balance == Decimal("27.4572")
    assert overview.total_balance == Decimal("29.6672")
    own, shared = overview.subaccounts
    assert (own.balance, own.credit_limit) == (Decimal("0.5"), Decimal("-100.25"))
    assert not own.use_primary_account_balance
    assert (shared.balance, shared.credit_limit) == (None, None)
    assert (shared.use_primary_account_balance, shared.suspended) == (True, True)

    no_totals = {k: v for k, v in SUBACCOUNTS.items() if not k.startswith("total")}
    assert parsing.parse_subaccounts(_doc(no_totals), CTX).total_balance is None


def test_refuses_a_subaccount_balance_that_is_not_a_number() -> None:
    bad = {"api_key": "k", "balance": "0.5"}
    with pytest.raises(MalformedResponseError, match="'balance'"):
        parsing.parse_subaccount(_doc(bad), CTX)
    with pytest.raises(MalformedResponseError, match="primary"):
        parsing.parse_subaccounts(_doc({"_embedded": {}}), CTX)


TRANSFER = {
    "masterAccountId": "KEY",
    "_links": {"self": {"href": "/accounts/KEY/balance-transfers/a1a90387"}},
    "from": "KEY",
    "to": "asdfqwer",
    "amount": 0.02,
    "reference": "A reference",
    "id": "a1a90387-0000",
    "created_at": "2024-08-29T13:29:51.000Z",
}


def test_parses_transfers_under_either_id_name() -> None:
    recorded = parsing.parse_transfer(_doc(TRANSFER), CTX)
    assert (recorded.id, recorded.amount, recorded.to_key) == (
        "a1a90387-0000",
        Decimal("0.02"),
        "asdfqwer",
    )
    assert recorded.extra["masterAccountId"] == "KEY"
    spec = {k: v for k, v in TRANSFER.items() if k != "id"} | {"balance_transfer_id": "b-1"}
    assert parsing.parse_transfer(_doc(spec), CTX).id == "b-1"
    listing = {"_embedded": {"balance_transfers": [TRANSFER]}}
    assert parsing.parse_transfers(_doc(listing), CTX) == [recorded]
    assert parsing.parse_transfers(_doc({}), CTX) == []
    with pytest.raises(MalformedResponseError, match="'amount'"):
        parsing.parse_transfer(_doc(TRANSFER | {"amount": "0.02"}), CTX)


# --- request payloads ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("secret", "valid"),
    [
        ("Abcdefg1", True),
        ("A1" + "b" * 23, True),
        ("Abcdef1", False),  # 7 characters
        ("A1" + "b" * 24, False),  # 26 characters
        ("abcdefg1", False),  # no uppercase
        ("ABCDEFG1", False),  # no lowercase
        ("Abcdefgh", False),  # no digit
        ("", False),
    ],
)
def test_checks_secret_complexity(secret: str, valid: bool) -> None:
    assert payloads.secret_is_valid(secret) is valid


def test_builds_transfer_json_with_exact_amount() -> None:
    body = payloads.transfer_json("KEY", "sub1", Decimal("0.10"), "ref")
    assert body == '{"from": "KEY", "to": "sub1", "amount": 0.10, "reference": "ref"}'
    assert json.loads(body, parse_float=Decimal)["amount"] == Decimal("0.10")
    assert '"amount": 100' in payloads.transfer_json("a", "b", Decimal("1E+2"), None)
    for bad in (Decimal(0), Decimal(-1), Decimal("NaN"), Decimal("Infinity"), 1.5):
        with pytest.raises(ValueError, match="amount"):
            payloads.transfer_json("a", "b", bad, None)  # type: ignore[arg-type]


def test_settings_form_uses_spec_casing_and_keeps_empty_strings() -> None:
    assert payloads.settings_form(None, None, None) == {}
    assert payloads.settings_form("", "https://e/dr", "POST_JSON") == {
        "moCallBackUrl": "",
        "drCallBackUrl": "https://e/dr",
        "httpForwardMethod": "POST_JSON",
    }
