"""``topup-guard``: the worker, the simulator, the backtest, and the Account API as commands.

Each command module registers its subcommands; every handler returns an exit code. Errors are
one clear line on stderr and a non-zero exit: 2 for bad configuration or input, 1 for failures,
141 (as for SIGPIPE) when whoever reads stdout stopped reading.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from topup_guard import __version__
from topup_guard.errors import ConfigError, TopupGuardError


def build_parser() -> argparse.ArgumentParser:
    # aiohttp is not imported here: ``run`` loads it at its first call other than a poll (a
    # top-up, a notification), through ``tlsdefer.import_aiohttp`` (no CA bundle read before a
    # TLS handshake needs one).
    import topup_guard.cli.commands as commands
    import topup_guard.cli.worker as worker

    parser = argparse.ArgumentParser(
        prog="topup-guard",
        description="Keeps a Vonage prepaid balance from running dry, and never charges twice.",
    )
    parser.add_argument("--version", action="version", version=f"topup-guard {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    worker.register(sub)
    commands.register_account(sub)
    commands.register_ledger(sub)
    commands.register_explain(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)  # inside: --help can meet a closed pipe too
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
    except SystemExit:  # --help, --version and usage errors print unflushed, then exit
        try:
            sys.stdout.flush()
        except BrokenPipeError:
            _silence_stdout()
        raise
    except BrokenPipeError:
        # The reader went away (`topup-guard config --json | head -1`): not our error, so no
        # traceback. Point stdout at /dev/null so the interpreter's final flush is silent too.
        _silence_stdout()
        return 128 + 13  # what a shell reports for a command ended by SIGPIPE


def _silence_stdout() -> None:
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):  # not a real file (tests capture stdout)
        pass
