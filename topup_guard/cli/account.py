"""The Account API as commands: balance, top-up, settings, config, subaccounts, transfer.

Secrets live in ``account_secrets.py`` and ``check`` in ``check.py``; their arguments are in
``commands.py``, which imports these modules only when one of their commands runs. Commands that
move money (``top-up``, ``transfer``) ask first on a terminal, need ``--yes`` otherwise, never
retry, and say "outcome unknown" when Vonage's answer cannot tell whether the money moved — a
blind second attempt could charge twice.
"""

from __future__ import annotations

import argparse
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import urlsplit

from topup_guard.cli._common import (
    AMBIGUOUS,
    client_for,
    confirm,
    emit,
    err,
    eur,
    money_json,
    rounded,
    settings_for_api,
)
from topup_guard.config import load_settings
from topup_guard.model import AccountSettings, Balance, Subaccount

# --- balance --------------------------------------------------------------------------------


def _auto_reload_text(value: bool | None) -> str:
    if value is None:
        return "unknown (Vonage did not say)"
    return "on" if value else "OFF — top-ups will be refused until it is enabled again"


def _balance_json(balance: Balance) -> dict[str, Any]:
    return {
        "balance_eur": money_json(balance.value),
        "balance_eur_rounded": money_json(rounded(balance.value)),
        "auto_reload": balance.auto_reload,
        "request_id": balance.request_id,
    }


async def balance(args: argparse.Namespace) -> int:
    settings = settings_for_api()
    async with client_for(settings) as client:
        result = await client.get_balance()
    text = (
        f"Balance:     {eur(result.value)} (≈ {eur(rounded(result.value))})\n"
        f"Auto-reload: {_auto_reload_text(result.auto_reload)}"
    )
    emit(args, _balance_json(result), text)
    return 0


# --- settings -------------------------------------------------------------------------------


def _settings_json(s: AccountSettings) -> dict[str, Any]:
    return {
        "mo_callback_url": s.mo_callback_url,
        "dr_callback_url": s.dr_callback_url,
        "max_outbound_request": s.max_outbound_request,
        "max_inbound_request": s.max_inbound_request,
        "max_calls_per_second": s.max_calls_per_second,
    }


def _settings_text(s: AccountSettings) -> str:
    width = max(len(k) for k in _settings_json(s))
    return "\n".join(
        f"{k.ljust(width)}  {'(unset)' if v in (None, '') else v}"
        for k, v in _settings_json(s).items()
    )


async def settings_show(args: argparse.Namespace) -> int:
    async with client_for(settings_for_api()) as client:
        current = await client.get_settings()
    emit(args, _settings_json(current), _settings_text(current))
    return 0


def _bad_callback(value: str | None) -> bool:
    if not value:  # None leaves it alone, "" clears it
        return False
    parts = urlsplit(value)
    return parts.scheme not in ("http", "https") or not parts.hostname


async def settings_set(args: argparse.Namespace) -> int:
    changes = (args.mo_callback_url, args.dr_callback_url, args.http_forward_method)
    if all(c is None for c in changes):
        err("nothing to change: give --mo-callback-url, --dr-callback-url or --http-forward-method")
        return 2
    for flag, value in (("--mo-callback-url", changes[0]), ("--dr-callback-url", changes[1])):
        if _bad_callback(value):
            err(f"{flag}: must be an http(s) URL, or an empty string to clear it")
            return 2
    async with client_for(settings_for_api()) as client:
        updated = await client.update_settings(
            mo_callback_url=changes[0], dr_callback_url=changes[1], http_forward_method=changes[2]
        )
    emit(args, _settings_json(updated), "Settings updated.\n" + _settings_text(updated))
    return 0


# --- config ---------------------------------------------------------------------------------


def show_config(args: argparse.Namespace) -> int:
    """The effective settings by variable name; secrets show only that they are set."""
    masked = load_settings().masked()
    width = max(len(k) for k in masked)
    emit(args, masked, "\n".join(f"{k.ljust(width)}  {v}" for k, v in masked.items()))
    return 0


# --- subaccounts and transfers --------------------------------------------------------------


def _sub_json(s: Subaccount) -> dict[str, Any]:
    return {
        "api_key": s.api_key,
        "name": s.name,
        "balance_eur": money_json(s.balance),
        "credit_limit_eur": money_json(s.credit_limit),
        "shared_balance": s.use_primary_account_balance,
        "suspended": s.suspended,
        "created_at": s.created_at,
    }


def _sub_line(s: Subaccount, role: str) -> str:
    shown = "shares the primary balance" if s.use_primary_account_balance else None
    if shown is None:
        shown = eur(s.balance) if s.balance is not None else "balance unknown"
    flags = " (suspended)" if s.suspended else ""
    return f"{role:<10} {s.api_key:<12} {shown:<30} {s.name or ''}{flags}"


async def subaccounts(args: argparse.Namespace) -> int:
    async with client_for(settings_for_api()) as client:
        overview = await client.list_subaccounts()
    data = {
        "primary": _sub_json(overview.primary),
        "subaccounts": [_sub_json(s) for s in overview.subaccounts],
        "total_balance_eur": money_json(overview.total_balance),
    }
    lines = [_sub_line(overview.primary, "primary")]
    lines += [_sub_line(s, "sub") for s in overview.subaccounts]
    if not overview.subaccounts:
        lines.append("(no subaccounts)")
    emit(args, data, "\n".join(lines))
    return 0


def _amount(text: str) -> Decimal | None:
    try:
        value = Decimal(text)
    except InvalidOperation:
        return None
    return value if value.is_finite() and value > 0 else None


async def transfer(args: argparse.Namespace) -> int:
    amount = _amount(args.amount)
    if amount is None:
        err(f"--amount: must be a positive number of EUR, for example 10.50 (got {args.amount!r})")
        return 2
    if args.from_key == args.to_key:
        err("--from and --to must be different accounts")
        return 2
    settings = settings_for_api()
    question = f"Move {eur(amount)} from {args.from_key} to {args.to_key}?"
    if (stop := confirm(args, question, "transfer balance")) is not None:
        return stop
    async with client_for(settings) as client:
        try:
            done = await client.transfer_balance(args.from_key, args.to_key, amount, args.reference)
        except AMBIGUOUS as exc:
            err(
                "outcome unknown — check the balances (topup-guard subaccounts) before trying "
                f"again ({type(exc).__name__}: {exc})"
            )
            return 1
    data = {
        "id": done.id,
        "from": done.from_key,
        "to": done.to_key,
        "amount_eur": money_json(done.amount),
        "reference": done.reference,
        "created_at": done.created_at,
    }
    text = f"Transferred {eur(done.amount)} from {done.from_key} to {done.to_key} (id {done.id})."
    emit(args, data, text)
    return 0
