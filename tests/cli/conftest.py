"""Helpers for CLI tests: run ``main(argv)`` for real against the simulator.

The simulator serves in the test's event loop, so the command runs in a worker thread (its own
``asyncio.run``) while the test awaits it. Streams are swapped on ``sys`` (capsys, monkeypatch),
so what the command prints is exactly what a user would see.
"""

from __future__ import annotations

import asyncio
import io
import sys
from typing import Any

import pytest

from tests.cli.helpers import Run, clean_env
from topup_guard.cli import main
from topup_guard.config import DEMO_API_KEY, DEMO_API_SECRET, DEMO_TRX
from topup_guard.sim import RunningSimulator


@pytest.fixture
def account_env(
    sim: RunningSimulator, monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> RunningSimulator:
    """The demo credentials, pointed at the simulator; stdin empty and not a terminal."""
    clean_env(monkeypatch)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("VONAGE_API_KEY", DEMO_API_KEY)
    monkeypatch.setenv("VONAGE_API_SECRET", DEMO_API_SECRET)
    monkeypatch.setenv("TOPUP_GUARD_TRX", DEMO_TRX)
    monkeypatch.setenv("TOPUP_GUARD_REST_URL", sim.url)
    monkeypatch.setenv("TOPUP_GUARD_API_URL", sim.url)
    monkeypatch.setenv("TOPUP_GUARD_STATE_PATH", str(tmp_path / "ledger.db"))
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    return sim


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Run:
    """``await cli("balance", "--json", stdin=...)`` -> (exit code, stdout, stderr)."""

    async def run(*argv: str, stdin: io.StringIO | None = None) -> tuple[int, str, str]:
        if stdin is not None:
            monkeypatch.setattr(sys, "stdin", stdin)
        capsys.readouterr()
        code = await asyncio.to_thread(main, list(argv))
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return run
