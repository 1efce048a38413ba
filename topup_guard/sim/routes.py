"""The Vonage endpoints: rest.nexmo.com ``/account/*`` and ``/sms/json``, api.nexmo.com
``/accounts/*``.

Handlers only translate between HTTP and ``SimAccount``; every rule lives in the model. Basic auth
and fault injection are applied around them by the middleware in ``server.py``.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import uuid
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qs

from aiohttp import web

from topup_guard.sim import wire
from topup_guard.sim.api_secrets import SimSecret
from topup_guard.sim.context import CONTEXT
from topup_guard.sim.refusals import SimRefusal
from topup_guard.sim.subaccounts import SimSubaccount, Transfer

# Route path -> (endpoint name used by faults and counters, host family).
ENDPOINTS: dict[str, tuple[str, str]] = {
    "/account/get-balance": ("get-balance", "rest"),
    "/account/top-up": ("top-up", "rest"),
    "/account/settings": ("settings", "rest"),
    "/accounts/{api_key}/secrets": ("secrets", "api"),
    "/accounts/{api_key}/secrets/{secret_id}": ("secrets", "api"),
    "/accounts/{api_key}/subaccounts": ("subaccounts", "api"),
    "/accounts/{api_key}/subaccounts/{sub_key}": ("subaccounts", "api"),
    "/accounts/{api_key}/balance-transfers": ("balance-transfers", "api"),
    # The SMS API checks credentials itself and answers 200 with a status, even for bad ones.
    "/sms/json": ("sms", "sms"),
}
REQUEST_ID = web.RequestKey("sim_request_id", str)


def fault_names(endpoint: str, method: str) -> tuple[str, ...]:
    """The fault endpoints a call answers to, most specific first: the transfer (POST
    ``balance-transfers``) also answers to ``balance-transfers-post``, its listing (GET) to
    ``balance-transfers-list``."""
    if endpoint == "balance-transfers":
        return ("balance-transfers-list" if method == "GET" else "balance-transfers-post", endpoint)
    return (endpoint,)


def request_id(request: web.Request) -> str:
    return str(request.get(REQUEST_ID, ""))


async def read_fields(request: web.Request) -> dict[str, str]:
    """Form fields of a rest POST.

    The body is sniffed, not trusted to its Content-Type: the Python SDK v4 keeps a JSON
    Content-Type header after any JSON call and then sends form bodies labelled as JSON.
    """
    text = await request.text()
    if text.lstrip().startswith("{"):
        try:
            data = json.loads(text)
        except json.JSONDecodeError:
            return {}
        return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}
    return {k: v[-1] for k, v in parse_qs(text, keep_blank_values=True).items()}


async def read_json(request: web.Request) -> dict[str, Any]:
    """A JSON object body (numbers as Decimal); refused as invalid-json otherwise."""
    try:
        data = json.loads(await request.text(), parse_float=Decimal)
    except json.JSONDecodeError:
        data = None
    if not isinstance(data, dict):
        raise _InvalidJson
    return data


class _InvalidJson(Exception):
    pass


# --- rest.nexmo.com ---------------------------------------------------------------------
async def get_balance(request: web.Request) -> web.Response:
    ctx = request.app[CONTEXT]
    await ctx.sleep(ctx.balance_latency_s / ctx.speed)
    t = ctx.advance()
    account = ctx.account
    ctx.answers.append((t, account.balance, account.auto_reload))
    return wire.json_response({"value": account.balance, "autoReload": account.auto_reload})


async def top_up(request: web.Request) -> web.Response:
    ctx = request.app[CONTEXT]
    trx = (await read_fields(request)).get("trx")
    if not trx:
        return wire.bad_request("trx", "Is required.")
    ctx.account.top_up(trx, ctx.advance())
    return wire.json_response({"error-code": "200", "error-code-label": "success"})


async def settings(request: web.Request) -> web.Response:
    account = request.app[CONTEXT].account
    fields = await read_fields(request)
    lowered = {k.lower(): v for k, v in fields.items()}  # moCallBackUrl and moCallbackUrl
    try:
        account.update_settings(
            mo=lowered.get("mocallbackurl"),
            dr=lowered.get("drcallbackurl"),
            method=lowered.get("httpforwardmethod"),
        )
    except ValueError:
        return wire.bad_request("httpForwardMethod", "Is invalid.")
    return wire.json_response(
        {
            "mo-callback-url": account.mo_callback_url,
            "dr-callback-url": account.dr_callback_url,
            "max-outbound-request": account.max_outbound_request,
            "max-inbound-request": account.max_inbound_request,
            "max-calls-per-second": account.max_calls_per_second,
        }
    )


# --- rest.nexmo.com: the SMS API ---------------------------------------------------------------
GSM_EXTENDED = frozenset("^{}\\[~]|€")
"""GSM 03.38 characters sent as an escape plus one more septet: they count twice."""
SMS_QUOTA_TEXT = "Quota Exceeded - rejected"
"""Vonage's status 9 error-text as seen in the wild (UNVERIFIED: docs/send-path-signal.md §2)."""
MAX_PARTS = 255


def basic_credentials(request: web.Request) -> tuple[str, str] | None:
    """(api_key, api_secret) from an ``Authorization: Basic`` header, else None."""
    scheme, _, encoded = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "basic" or not encoded:
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None
    key, sep, secret = decoded.partition(":")
    return (key, secret) if sep else None


def sms_parts(text: str, kind: str) -> int:
    """Parts Vonage bills for ``text``: 160/153 GSM-7 septets, or 70/67 UCS-2 characters."""
    if kind == "unicode":
        return 1 if len(text) <= 70 else math.ceil(len(text) / 67)
    septets = sum(2 if ch in GSM_EXTENDED else 1 for ch in text)
    return 1 if septets <= 160 else math.ceil(septets / 153)


def _eight(value: Decimal) -> str:
    """Money as the SMS API writes it: a string with exactly 8 decimals (``"3.14159265"``)."""
    return format(value.quantize(Decimal("0.00000001")), "f")


def _sms_answer(messages: list[dict[str, str]]) -> web.Response:
    return wire.json_response({"message-count": str(len(messages)), "messages": messages})


async def send_sms(request: web.Request) -> web.Response:
    """``POST /sms/json``: credentials by Basic auth or ``api_key``/``api_secret`` fields (body or
    query); HTTP 200 whatever happens, the outcome in each message's ``status``."""
    ctx = request.app[CONTEXT]
    fields = {**request.rel_url.query, **(await read_fields(request))}
    creds = basic_credentials(request) or (fields.get("api_key", ""), fields.get("api_secret", ""))
    if not ctx.account.authenticate(*creds):
        return _sms_answer([{"status": "4", "error-text": "Bad Credentials"}])
    for name in ("from", "to", "text"):
        if not fields.get(name):
            return _sms_answer([{"status": "2", "error-text": f"Missing {name} param"}])
    to, parts = fields["to"], sms_parts(fields["text"], fields.get("type", "text"))
    if parts > MAX_PARTS:
        return _sms_answer([{"to": to, "status": "12", "error-text": "Message too long"}])
    accepted, price, balance = ctx.account.send_sms(ctx.advance(), parts)
    if not accepted:
        return _sms_answer([{"to": to, "status": "9", "error-text": SMS_QUOTA_TEXT}])
    extra = {k: fields[k] for k in ("client-ref", "account-ref") if fields.get(k)}
    # Every part shows the same remaining-balance: one snapshot per request, as Vonage answers.
    return _sms_answer(
        [
            {
                "to": to,
                "message-id": uuid.uuid4().hex[:16].upper(),
                "status": "0",
                "remaining-balance": _eight(balance),
                "message-price": _eight(price),
                "network": "12345",
                **extra,
            }
            for _ in range(parts)
        ]
    )


# --- api.nexmo.com: secrets ---------------------------------------------------------------
def _secret_body(api_key: str, secret: SimSecret) -> dict[str, Any]:
    href = f"/accounts/{api_key}/secrets/{secret.id}"
    return {"_links": {"self": {"href": href}}, "id": secret.id, "created_at": secret.created_at}


async def list_secrets(request: web.Request) -> web.Response:
    key = request.match_info["api_key"]
    store = request.app[CONTEXT].account.secrets_of(key)
    body = {
        "_links": {"self": {"href": f"/accounts/{key}/secrets"}},
        "_embedded": {"secrets": [_secret_body(key, s) for s in store.list()]},
    }
    return wire.json_response(body)


async def create_secret(request: web.Request) -> web.Response:
    ctx = request.app[CONTEXT]
    key = request.match_info["api_key"]
    ctx.account.secrets_of(key)  # an unknown key is a 404 before the body matters
    body = await read_json(request)
    secret = ctx.account.create_secret(key, body.get("secret"), ctx.advance())
    return wire.json_response(_secret_body(key, secret), 201)


async def get_secret(request: web.Request) -> web.Response:
    key, secret_id = request.match_info["api_key"], request.match_info["secret_id"]
    secret = request.app[CONTEXT].account.secrets_of(key).get(secret_id)
    return wire.json_response(_secret_body(key, secret))


async def revoke_secret(request: web.Request) -> web.Response:
    key, secret_id = request.match_info["api_key"], request.match_info["secret_id"]
    request.app[CONTEXT].account.secrets_of(key).revoke(secret_id)
    return web.Response(status=204)


# --- api.nexmo.com: subaccounts and transfers ---------------------------------------------
def _primary_key(request: web.Request) -> str:
    """The path's key must be the primary account's (subaccounts cannot manage subaccounts)."""
    key = request.match_info["api_key"]
    if key != request.app[CONTEXT].account.api_key:
        raise SimRefusal("invalid-api-key", f"API key '{key}' does not exist")
    return key


def _sub_body(sub: SimSubaccount, primary: str) -> dict[str, Any]:
    return {
        "api_key": sub.api_key,
        "primary_account_api_key": primary,
        "use_primary_account_balance": sub.use_primary_account_balance,
        "name": sub.name,
        "balance": sub.balance,
        "credit_limit": sub.credit_limit,
        "suspended": sub.suspended,
        "created_at": sub.created_at,
    }


async def list_subaccounts(request: web.Request) -> web.Response:
    ctx = request.app[CONTEXT]
    key = _primary_key(request)
    ctx.advance()
    account = ctx.account
    subs = list(account.subaccounts.values())
    own = [s for s in subs if not s.use_primary_account_balance]
    body = {
        "_links": {"self": {"href": f"/accounts/{key}/subaccounts"}},
        "total_balance": account.balance + sum((s.balance or Decimal(0) for s in own), Decimal(0)),
        "total_credit_limit": sum((s.credit_limit or Decimal(0) for s in own), Decimal(0)),
        "_embedded": {
            "primary_account": {
                "api_key": key,
                "name": account.primary_name,
                "balance": account.balance,
                "credit_limit": Decimal(0),
                "suspended": False,
                "created_at": account.iso(0.0),
            },
            "subaccounts": [_sub_body(s, key) for s in subs],
        },
    }
    return wire.json_response(body)


async def get_subaccount(request: web.Request) -> web.Response:
    key = _primary_key(request)
    request.app[CONTEXT].advance()  # a subaccount's own demand has spent until now
    sub = request.app[CONTEXT].account.subaccount(request.match_info["sub_key"])
    return wire.json_response(_sub_body(sub, key))


def _transfer_body(tr: Transfer, primary: str) -> dict[str, Any]:
    return {
        "masterAccountId": primary,
        "_links": {"self": {"href": f"/accounts/{primary}/balance-transfers/{tr.id}"}},
        "from": tr.from_key,
        "to": tr.to_key,
        "amount": tr.amount,
        "reference": tr.reference or "",
        "id": tr.id,
        "created_at": tr.created_at,
    }


async def transfer_balance(request: web.Request) -> web.Response:
    ctx = request.app[CONTEXT]
    key = _primary_key(request)
    body = await read_json(request)
    record = ctx.account.transfer(
        body.get("from"), body.get("to"), body.get("amount"), body.get("reference"), ctx.advance()
    )
    return wire.json_response(_transfer_body(record, key))


async def list_transfers(request: web.Request) -> web.Response:
    key = _primary_key(request)
    query = request.rel_url.query
    found = request.app[CONTEXT].account.list_transfers(
        query.get("start_date"), query.get("end_date"), query.getall("subaccount", [])
    )
    body = {
        "_links": {"self": {"href": f"/accounts/{key}/balance-transfers"}},
        "_embedded": {"balance_transfers": [_transfer_body(t, key) for t in found]},
    }
    return wire.json_response(body)


async def vonage_handler_errors(request: web.Request, handler: Any) -> web.StreamResponse:
    """Turn model refusals and bad JSON into Vonage's answers."""
    try:
        response: web.StreamResponse = await handler(request)
    except SimRefusal as exc:
        return wire.refusal(exc, request_id(request))
    except _InvalidJson:
        return wire.problem("invalid-json", request_id(request), "Request body is not JSON")
    return response


def add_routes(app: web.Application) -> None:
    r = app.router
    r.add_get("/account/get-balance", get_balance)
    r.add_post("/account/top-up", top_up)
    r.add_post("/account/settings", settings)
    r.add_post("/sms/json", send_sms)
    r.add_get("/accounts/{api_key}/secrets", list_secrets)
    r.add_post("/accounts/{api_key}/secrets", create_secret)
    r.add_get("/accounts/{api_key}/secrets/{secret_id}", get_secret)
    r.add_delete("/accounts/{api_key}/secrets/{secret_id}", revoke_secret)
    r.add_get("/accounts/{api_key}/subaccounts", list_subaccounts)
    r.add_get("/accounts/{api_key}/subaccounts/{sub_key}", get_subaccount)
    r.add_post("/accounts/{api_key}/balance-transfers", transfer_balance)
    r.add_get("/accounts/{api_key}/balance-transfers", list_transfers)
