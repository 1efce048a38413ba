"""Commands registered without their modules still run them: help, and a handler's own errors."""

from __future__ import annotations

import subprocess
import sys

from topup_guard.cli import build_parser, main


def test_a_lazy_handler_imports_its_module_and_returns_the_commands_exit_code() -> None:
    args = build_parser().parse_args(["ledger", "--state", "no-such-state"])

    assert args.handler.__name__ == "ledger"
    assert main(["ledger", "--state", "no-such-state"]) == 2  # the ledger module's ConfigError


def test_simulate_help_still_lists_the_game_day_controls_and_top_level_help_every_command() -> None:
    sim_help = subprocess.run(
        [sys.executable, "-m", "topup_guard", "simulate", "--help"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    top = subprocess.run(
        [sys.executable, "-m", "topup_guard", "--help"], capture_output=True, text=True, check=True
    ).stdout

    assert "/_sim/faults" in sim_help
    assert "(the game-day controls)" not in sim_help
    for command in ("run", "balance", "top-up", "secrets", "check", "ledger", "explain"):
        assert command in top
