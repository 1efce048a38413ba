"""The account, ledger and explain commands' arguments, with handlers imported when they run.

``topup-guard run`` builds the whole parser (``--help`` lists every command) but runs none of
these: registering them must not load their modules (the Account API's secrets and checks, the
ledger's timelines, ~0.8 MB and ~25 modules the worker would carry for its whole life).
"""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from topup_guard.cli._common import add_json, add_yes
from topup_guard.ledger.base import AttemptState

FORWARD_METHODS = ("GET_QUERY_PARAMS", "POST_QUERY_PARAMS", "POST_JSON")
STATES = tuple(s.value for s in AttemptState)

if TYPE_CHECKING:
    Subparsers = argparse._SubParsersAction[argparse.ArgumentParser]


def lazy(
    module: str, name: str, *, asynchronous: bool = True
) -> Callable[[argparse.Namespace], int]:
    """A handler that imports ``topup_guard.cli.<module>`` when the command runs, not before."""

    def handler(args: argparse.Namespace) -> int:
        core = getattr(importlib.import_module(f"topup_guard.cli.{module}"), name)
        if asynchronous:
            from topup_guard.cli._common import sync

            core = sync(core)
        code: int = core(args)
        return code

    handler.__name__ = name
    return handler


def register_account(sub: Subparsers) -> None:
    p = sub.add_parser("balance", help="show the balance (EUR) and the auto-reload state")
    add_json(p)
    p.set_defaults(handler=lazy("account", "balance"))

    p = sub.add_parser(
        "top-up", help="charge the auto-reload amount to the stored payment method, once"
    )
    add_json(p)
    add_yes(p)
    p.add_argument(
        "--force",
        action="store_true",
        help="top up even when the caps, the breaker or TOPUP_GUARD_DRY_RUN would stop the "
        "guard (recorded in the ledger as forced)",
    )
    p.set_defaults(handler=lazy("manual_topup", "top_up"))

    p = sub.add_parser("settings", help="show or change the account's callback settings")
    ssub = p.add_subparsers(dest="settings_command", required=True, metavar="ACTION")
    show = ssub.add_parser("show", help="show the current settings")
    add_json(show)
    show.set_defaults(handler=lazy("account", "settings_show"))
    change = ssub.add_parser("set", help="change callback URLs (an empty string clears one)")
    change.add_argument("--mo-callback-url", metavar="URL", help="inbound SMS webhook")
    change.add_argument("--dr-callback-url", metavar="URL", help="delivery receipt webhook")
    change.add_argument("--http-forward-method", choices=FORWARD_METHODS)
    add_json(change)
    change.set_defaults(handler=lazy("account", "settings_set"))

    _register_secrets(sub)
    _register_check(sub)

    p = sub.add_parser("config", help="print the effective settings, secrets masked")
    add_json(p)
    p.set_defaults(handler=lazy("account", "show_config", asynchronous=False))

    p = sub.add_parser("subaccounts", help="list the subaccounts and their balances")
    add_json(p)
    p.set_defaults(handler=lazy("account", "subaccounts"))

    p = sub.add_parser("transfer", help="move balance between the primary and a subaccount")
    p.add_argument("--from", dest="from_key", required=True, metavar="KEY")
    p.add_argument("--to", dest="to_key", required=True, metavar="KEY")
    p.add_argument("--amount", required=True, metavar="EUR")
    p.add_argument("--reference", metavar="TEXT")
    add_json(p)
    add_yes(p)
    p.set_defaults(handler=lazy("account", "transfer"))


def _register_secrets(sub: Subparsers) -> None:
    p = sub.add_parser("secrets", help="list, create, revoke or rotate API secrets")
    ssub = p.add_subparsers(dest="secrets_command", required=True, metavar="ACTION")

    lst = ssub.add_parser("list", help="list the secrets' ids and creation times")
    add_json(lst)
    lst.set_defaults(handler=lazy("account_secrets", "secrets_list"))

    create = ssub.add_parser("create", help="add a secret read from stdin or --secret-file")
    create.add_argument("--secret-file", type=Path, metavar="FILE", help="read the secret here")
    add_json(create)
    create.set_defaults(handler=lazy("account_secrets", "secrets_create"))

    revoke = ssub.add_parser("revoke", help="revoke a secret by id")
    revoke.add_argument("secret_id", metavar="ID")
    add_json(revoke)
    revoke.set_defaults(handler=lazy("account_secrets", "secrets_revoke"))

    rotate = ssub.add_parser("rotate", help="create, prove and hand over a new secret, then revoke")
    rotate.add_argument(
        "--output",
        type=Path,
        metavar="FILE",
        help="write the new secret here (0600, must not exist)",
    )
    rotate.add_argument("--revoke", metavar="ID", help="the id of the old secret to revoke")
    add_json(rotate)
    rotate.set_defaults(handler=lazy("account_secrets", "secrets_rotate"))


def _register_check(sub: Subparsers) -> None:
    p = sub.add_parser("check", help="validate the configuration against the account")
    p.add_argument(
        "--live", action="store_true", help="only ask the running worker's /livez (exec probe)"
    )
    p.add_argument("--url", metavar="URL", help="the /livez URL for --live")
    p.add_argument(
        "--slack", action="store_true", help="also send a test message through the configured Slack"
    )
    add_json(p)
    p.set_defaults(handler=lazy("check", "check"))


def register_ledger(sub: Subparsers) -> None:
    p = sub.add_parser(
        "ledger",
        help="every top-up attempt (and, in fleet mode, balance transfer) with its timeline, "
        "evidence and reason (read-only)",
        description="Reads the ledger the configuration selects (TOPUP_GUARD_REDIS_URL, else "
        "the SQLite file at TOPUP_GUARD_STATE_PATH) without writing to it.",
    )
    p.add_argument(
        "--since",
        metavar="WHEN",
        help="only attempts created since: a duration (90s, 30m, 2h, 7d) or an ISO time "
        "(2026-12-01T09:30, UTC unless an offset is given); default: all",
    )
    p.add_argument(
        "--state",
        action="append",
        default=[],
        metavar="STATE",
        help="only attempts (and transfers) now in this state (repeatable or comma-separated): "
        + ", ".join(STATES),
    )
    p.add_argument(
        "--account",
        metavar="KEY",
        help="fleet mode: only this account: a subaccount's key shows its transfers, the "
        "primary's key its top-ups",
    )
    add_json(p)
    p.set_defaults(handler=lazy("ledger", "ledger"))


def register_explain(sub: Subparsers) -> None:
    p = sub.add_parser(
        "explain",
        help="the last decision with its inputs (a running guard's /status, else the ledger)",
    )
    p.add_argument(
        "--url",
        metavar="URL",
        help="the guard's /status (default: http://127.0.0.1:$TOPUP_GUARD_HEALTH_PORT/status)",
    )
    add_json(p)
    p.set_defaults(handler=lazy("explain", "explain"))
