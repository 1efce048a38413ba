"""What every Account API command shares: the client, money formatting, output, confirmation.

Each command is an ``async def`` core taking the parsed ``argparse.Namespace`` and returning an
exit code; :func:`sync` wraps it for argparse. Tests await the cores (or call ``main`` in a
thread), so a simulator running in the test's own event loop can answer them.

Streams are looked up on ``sys`` at call time, never bound at import, so a redirected stdout or a
replaced stdin (tests, pipes) is always the one used. Human-readable chatter goes to stderr when
stdout carries data a script will read (``--json``, a secret written to stdout).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Callable, Coroutine, Mapping
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from topup_guard.config import Settings, load_settings
from topup_guard.errors import MalformedResponseError, OutcomeUnknownError, ServerError
from topup_guard.vonage import VonageClient

Core = Callable[[argparse.Namespace], Coroutine[Any, Any, int]]
AMBIGUOUS = (ServerError, OutcomeUnknownError, MalformedResponseError)
"""Errors after which a POST may or may not have been applied: never retry blindly."""
CENT = Decimal("0.01")


def sync(core: Core) -> Callable[[argparse.Namespace], int]:
    """The argparse handler for an async core: one event loop per command run."""

    def handler(args: argparse.Namespace) -> int:
        return asyncio.run(core(args))

    handler.__name__ = getattr(core, "__name__", "handler")
    return handler


def add_json(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--json", action="store_true", help="print one JSON document (for scripts) instead of text"
    )


def add_yes(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--yes", action="store_true", help="do not ask for confirmation (required without a TTY)"
    )


def settings_for_api(*extra: str) -> Settings:
    """The settings, with the key and secret (and ``extra`` fields) required: else ConfigError."""
    settings = load_settings()
    settings.require("api_key", "api_secret", *extra)
    return settings


def client_for(settings: Settings, api_secret: str | None = None) -> VonageClient:
    """A client for the configured account; ``api_secret`` overrides the configured one."""
    assert settings.api_key is not None  # settings_for_api() required it
    return VonageClient(
        settings.api_key,
        api_secret if api_secret is not None else settings.secret("api_secret"),
        rest_url=settings.rest_url,
        api_url=settings.api_url,
        timeout=settings.http_timeout,
    )


def eur(value: Decimal) -> str:
    """Full precision, as Vonage reports it: ``EUR 29.18202293``."""
    return f"EUR {value:f}"


def rounded(value: Decimal) -> Decimal:
    return value.quantize(CENT, rounding=ROUND_HALF_UP)


def money_json(value: Decimal | None) -> str | None:
    """Money in JSON is an exact decimal string: a JSON number would be read back as a float."""
    return None if value is None else f"{value:f}"


def out(text: str) -> None:
    print(text, file=sys.stdout, flush=True)


def err(text: str) -> None:
    print(f"topup-guard: {text}", file=sys.stderr, flush=True)


def say(text: str) -> None:
    """Progress and explanations meant for a person: stderr, so stdout stays parseable."""
    print(text, file=sys.stderr, flush=True)


def emit(args: argparse.Namespace, data: Mapping[str, Any] | list[Any], text: str) -> None:
    """``data`` as JSON with ``--json``, ``text`` otherwise."""
    out(json.dumps(data, indent=2) if args.json else text)


def stdin_is_tty() -> bool:
    try:
        return sys.stdin is not None and sys.stdin.isatty()
    except ValueError:  # closed stream
        return False


def refuse_unconfirmed(args: argparse.Namespace, action: str) -> int | None:
    """Exit 2 when there is neither ``--yes`` nor a terminal to ask on, else None.

    A script that forgot ``--yes`` must neither hang on a prompt nor spend money it was not told
    to; checked before anything is read or sent.
    """
    if args.yes or stdin_is_tty():
        return None
    err(f"refusing to {action} without confirmation: no terminal to ask on; pass --yes")
    return 2


def confirm(args: argparse.Namespace, question: str, action: str) -> int | None:
    """None when the user agreed (or passed ``--yes``), else the exit code to stop with."""
    if args.yes:
        return None
    if (stop := refuse_unconfirmed(args, action)) is not None:
        return stop
    print(f"{question} [y/N] ", end="", file=sys.stderr, flush=True)
    answer = sys.stdin.readline().strip().lower()
    if answer in ("y", "yes"):
        return None
    say("Cancelled; nothing was done.")
    return 1
