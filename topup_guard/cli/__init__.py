"""``topup-guard``: the worker, the simulator, the backtest, and the Account API as commands.

Each command module registers its subcommands; every handler returns an exit code. Errors are
one clear line on stderr and a non-zero exit: 2 for bad configuration or input, 1 for failures.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from topup_guard import __version__
from topup_guard.errors import ConfigError, TopupGuardError


def build_parser() -> argparse.ArgumentParser:
    from topup_guard.tlsdefer import import_aiohttp

    import_aiohttp()  # before the commands do: no CA bundle read that plain HTTP never needs
    import topup_guard.cli.account as account
    import topup_guard.cli.worker as worker

    parser = argparse.ArgumentParser(
        prog="topup-guard",
        description="Keeps a Vonage prepaid balance from running dry, and never charges twice.",
    )
    parser.add_argument("--version", action="version", version=f"topup-guard {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    worker.register(sub)
    account.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.handler(args)
        return code
    except ConfigError as exc:
        for line in exc.problems:
            print(f"topup-guard: {line}", file=sys.stderr)
        return 2
    except TopupGuardError as exc:
        print(f"topup-guard: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
