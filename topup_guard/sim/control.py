"""The simulator's own control API under ``/_sim`` (no auth: it is a test and demo tool).

``GET /_sim/state`` shows what a test needs to assert money safety (top-ups applied and when,
failed spend, call counts by endpoint and status); ``POST /_sim/faults`` and
``POST /_sim/control`` steer the account while a client runs against it, and
``POST /_sim/subaccounts/{key}`` one subaccount's spend rate, balance or suspension.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from decimal import Decimal, InvalidOperation
from typing import Any

from aiohttp import web

from topup_guard.sim import wire
from topup_guard.sim.context import CONTEXT, SimContext
from topup_guard.sim.faults import parse_fault
from topup_guard.sim.subaccounts import SimSubaccount
from topup_guard.sim.subspend import SubaccountFigures

_CONTROL_KEYS = {
    "balance",
    "auto_reload",
    "fail_payments",
    "spend_rate",
    "topup_amount",
    "autoreload_threshold",
    "credit_delay_s",
    "debit",
}


def state_body(ctx: SimContext) -> dict[str, Any]:
    t = ctx.advance()
    a = ctx.account
    rate = a.spend_rate_override if a.spend_rate_override is not None else a.spend.rate_at(t)
    return {
        "t": t,
        "speed": ctx.speed,
        "balance": a.balance,
        "auto_reload": a.auto_reload,
        "topup_amount": a.topup_amount,
        "autoreload_threshold": a.autoreload_threshold,
        "next_autoreload_check": a.next_check,
        "fail_payments": a.fail_payments,
        "payments_failed": a.payments_failed,
        "spend_rate": rate,
        "spend_rate_override": a.spend_rate_override,
        "topups": [{"t": when, "amount": amount} for when, amount in a.topups],
        "autoreloads": [{"t": when, "amount": amount} for when, amount in a.autoreloads],
        "served_spend": a.served_spend,
        "served_events": a.served_events,
        "failed_spend": a.failed_spend,
        "failed_events": a.failed_events,
        "exhausted_seconds": a.exhausted_seconds,
        "secrets": len(a.secrets_of(a.api_key).list()),
        "transfers": len(a.transfers),
        "calls": ctx.calls_by_endpoint(),
        "faults": ctx.faults.active(),
        **subaccounts_state(ctx, t),
    }


def subaccounts_state(ctx: SimContext, t: float) -> dict[str, Any]:
    """Per subaccount: balance, spend rate, served and refused demand; and the refused total."""
    a = ctx.account
    figures = a.subaccount_figures(t)
    subs = {key: _sub_entry(sub, figures.get(key)) for key, sub in a.subaccounts.items()}
    refused = sum((f.refused_spend for f in figures.values()), Decimal(0))
    return {"subaccounts": subs, "subaccounts_refused_spend": refused}


def _sub_entry(sub: SimSubaccount, figures: SubaccountFigures | None) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "balance": sub.balance,
        "credit_limit": sub.credit_limit,
        "use_primary_account_balance": sub.use_primary_account_balance,
        "suspended": sub.suspended,
    }
    return entry | (asdict(figures) if figures is not None else _NO_DEMAND)


_NO_DEMAND = {
    "spend_rate": Decimal(0),
    "served_spend": Decimal(0),
    "served_events": 0,
    "refused_spend": Decimal(0),
    "refused_events": 0,
    "exhausted_seconds": 0.0,
}
_SUB_CONTROL_KEYS = {"spend_rate", "balance", "suspended"}


async def control_subaccount(request: web.Request) -> web.Response:
    """``POST /_sim/subaccounts/{key}``: ``spend_rate`` (EUR/s from now on; ``null`` restores the
    scenario's), ``balance`` (an own balance, set now), ``suspended``; answers its state."""
    ctx = request.app[CONTEXT]
    key = request.match_info["sub_key"]
    data = await _body(request)
    if not isinstance(data, dict):
        return _error("body must be a JSON object")
    unknown = sorted(set(data) - _SUB_CONTROL_KEYS)
    if unknown:
        known = ", ".join(sorted(_SUB_CONTROL_KEYS))
        return _error(f"unknown key '{unknown[0]}'; known: {known}")
    a, t = ctx.account, ctx.advance()
    if key not in a.subaccounts:
        return wire.json_response({"error": f"no subaccount {key!r}"}, 404)
    try:
        rate = None if data.get("spend_rate") is None else _money("spend_rate", data["spend_rate"])
        if rate is not None and rate < 0:
            raise ValueError("spend_rate must not be negative")
        balance = _money("balance", data["balance"]) if "balance" in data else None
        if "suspended" in data and not isinstance(data["suspended"], bool):
            raise ValueError("suspended must be true or false")
        if balance is not None and a.subaccounts[key].use_primary_account_balance:
            raise ValueError(f"subaccount {key} uses the primary account's balance")
    except (ValueError, InvalidOperation) as exc:
        return _error(str(exc))
    if "spend_rate" in data:
        a.set_subaccount_spend_rate(key, rate, t)
    if balance is not None:
        a.set_subaccount_balance(key, balance, t)
    if "suspended" in data:
        a.subaccounts[key].suspended = data["suspended"]
    sub = a.subaccounts[key]
    return wire.json_response(_sub_entry(sub, a.subaccount_figures(t).get(key)))


def _error(message: str) -> web.Response:
    return wire.json_response({"error": message}, 400)


async def _body(request: web.Request) -> object:
    try:
        return json.loads(await request.text() or "{}", parse_float=Decimal)
    except json.JSONDecodeError:
        return None


async def get_state(request: web.Request) -> web.Response:
    return wire.json_response(state_body(request.app[CONTEXT]))


async def get_faults(request: web.Request) -> web.Response:
    return wire.json_response({"faults": request.app[CONTEXT].faults.active()})


async def add_faults(request: web.Request) -> web.Response:
    """One fault object, or a list of them; answers the whole active list."""
    ctx = request.app[CONTEXT]
    data = await _body(request)
    try:
        faults = [parse_fault(d) for d in (data if isinstance(data, list) else [data])]
    except ValueError as exc:
        return _error(str(exc))
    for fault in faults:
        ctx.faults.add(fault)
    return wire.json_response({"faults": ctx.faults.active()})


async def clear_faults(request: web.Request) -> web.Response:
    ctx = request.app[CONTEXT]
    ctx.faults.clear()
    return wire.json_response({"faults": []})


async def control(request: web.Request) -> web.Response:
    """Set any of ``_CONTROL_KEYS``; ``spend_rate: null`` restores the scenario's rate;
    ``debit`` takes a one-off amount now (a number rental, a transfer to a subaccount);
    ``credit_delay_s`` makes top-up credits show that long after Vonage's "200"."""
    ctx = request.app[CONTEXT]
    data = await _body(request)
    if not isinstance(data, dict):
        return _error("body must be a JSON object")
    unknown = sorted(set(data) - _CONTROL_KEYS)
    if unknown:
        return _error(f"unknown key '{unknown[0]}'; known: {', '.join(sorted(_CONTROL_KEYS))}")
    try:
        _apply(ctx, data)
    except (ValueError, InvalidOperation) as exc:
        return _error(str(exc))
    return wire.json_response(state_body(ctx))


def _apply(ctx: SimContext, data: dict[str, Any]) -> None:
    a, t = ctx.account, ctx.advance()
    keys = ("balance", "topup_amount", "autoreload_threshold")
    money = {k: _money(k, data[k]) for k in keys if k in data}
    if "auto_reload" in data and not isinstance(data["auto_reload"], bool):
        raise ValueError("auto_reload must be true or false")
    fail = data.get("fail_payments", 0)
    if isinstance(fail, bool) or not isinstance(fail, int) or fail < 0:
        raise ValueError("fail_payments must be a non-negative integer")
    debit = _money("debit", data["debit"]) if "debit" in data else None
    if debit is not None and debit <= 0:
        raise ValueError("debit must be a positive amount")
    delay = data.get("credit_delay_s")
    if delay is not None and (isinstance(delay, bool) or not isinstance(delay, int | Decimal)
                              or delay < 0):  # fmt: skip
        raise ValueError("credit_delay_s must be a non-negative number of seconds")
    rate = data.get("spend_rate")
    rate_value = None if rate is None else _money("spend_rate", rate)
    if rate_value is not None and rate_value < 0:
        raise ValueError("spend_rate must not be negative")
    # Everything validated: apply.
    if "balance" in money:
        a.set_balance(money["balance"], t)
    if "topup_amount" in money:
        a.topup_amount = money["topup_amount"]
    if "autoreload_threshold" in money:
        a.autoreload_threshold = money["autoreload_threshold"]
    if "auto_reload" in data:
        a.set_auto_reload(data["auto_reload"], t)
    if "fail_payments" in data:
        a.fail_payments = fail
    if "spend_rate" in data:
        a.set_spend_rate(rate_value, t)
    if delay is not None:
        a.credit_delay_s = float(delay)  # how long a top-up's credit lags Vonage's "200"
    if debit is not None:
        a.one_off_debit(debit, t)


def _money(key: str, raw: object) -> Decimal:
    if raw is None and key != "spend_rate":
        raise ValueError(f"{key} must be a number")
    if isinstance(raw, bool) or not isinstance(raw, int | Decimal | str):
        raise ValueError(f"{key} must be a number")
    value = Decimal(str(raw))
    if not value.is_finite():
        raise ValueError(f"{key} must be finite")
    return value


def add_control_routes(app: web.Application) -> None:
    r = app.router
    r.add_get("/_sim/state", get_state)
    r.add_get("/_sim/faults", get_faults)
    r.add_post("/_sim/faults", add_faults)
    r.add_delete("/_sim/faults", clear_faults)
    r.add_post("/_sim/control", control)
    r.add_post("/_sim/subaccounts/{sub_key}", control_subaccount)
