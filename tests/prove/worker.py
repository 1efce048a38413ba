"""A real ``topup-guard run`` process against an in-process simulator, and ways to watch it.

The test process owns the simulator (so it can read the account and its fault list directly)
and reads the worker's SQLite ledger file with its own connection, to time a ``kill -9`` to the
exact step of a top-up.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from topup_guard.config import DEMO_API_KEY, DEMO_API_SECRET, DEMO_TRX
from topup_guard.sim import RunningSimulator
from topup_guard.sim.context import CONTEXT, SimContext


def worker_env(sim_url: str, state: Path, **extra: str) -> dict[str, str]:
    """The worker's environment: only what a deployment sets, plus the simulator's URL."""
    keep = {k: v for k, v in os.environ.items() if not k.startswith(("TOPUP_GUARD_", "VONAGE_",
                                                                     "OTEL_"))}  # fmt: skip
    env = keep | {
        "VONAGE_API_KEY": DEMO_API_KEY,
        "VONAGE_API_SECRET": DEMO_API_SECRET,
        "TOPUP_GUARD_TRX": DEMO_TRX,
        "TOPUP_GUARD_REST_URL": sim_url,
        "TOPUP_GUARD_API_URL": sim_url,
        "TOPUP_GUARD_STATE_PATH": str(state),
        "TOPUP_GUARD_MIN_BALANCE": "10",
        "TOPUP_GUARD_POLL_MIN": "0.5",
        "TOPUP_GUARD_POLL_INTERVAL": "0.5",
        "TOPUP_GUARD_SETTLE_WINDOW": "2",
        "TOPUP_GUARD_HTTP_TIMEOUT": "10",
        "TOPUP_GUARD_TOPUP_AMOUNT": "50",
        "TOPUP_GUARD_HEALTH_PORT": "0",
        "TOPUP_GUARD_SIGNAL_PORT": "0",
        "TOPUP_GUARD_LOG_FORMAT": "json",
        "OTEL_SDK_DISABLED": "true",
    }
    return env | {f"TOPUP_GUARD_{k.upper()}": v for k, v in extra.items()}


class Worker:
    """One ``python -m topup_guard run`` process; stderr (JSON logs) goes to a file."""

    def __init__(self, env: dict[str, str], log: Path, user: int | None = None) -> None:
        self.log = log
        self._out = log.open("ab")
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "topup_guard", "run"],
                env=env,
                stdout=self._out,
                stderr=self._out,
                user=user,
            )
        except BaseException:
            self._out.close()
            raise

    def kill9(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)
        self._out.close()

    def terminate(self, timeout: float = 20.0) -> int:
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout=timeout)
        self._out.close()
        return code

    def wait(self, timeout: float = 20.0) -> int:
        code = self.proc.wait(timeout=timeout)
        self._out.close()
        return code

    def ensure_dead(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        if not self._out.closed:
            self._out.close()

    def text(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")


def ledger_states(path: Path) -> list[tuple[int, str]]:
    """(attempt id, latest state) of every attempt in the worker's ledger file, read directly."""
    if not path.exists():
        return []
    db = sqlite3.connect(path, timeout=5.0)
    try:
        rows = db.execute(
            "SELECT attempt_id, state FROM ledger_events e WHERE seq = "
            "(SELECT MAX(seq) FROM ledger_events x WHERE x.attempt_id = e.attempt_id) "
            "ORDER BY attempt_id"
        ).fetchall()
    except sqlite3.OperationalError:  # no table yet
        return []
    finally:
        db.close()
    return [(int(a), str(s)) for a, s in rows]


def ctx_of(sim: RunningSimulator) -> SimContext:
    return sim.app[CONTEXT]


async def wait_for(what: str, cond: Callable[[], bool], timeout: float = 20.0) -> None:
    """Poll ``cond`` every 20 ms (the event loop keeps serving the simulator meanwhile)."""
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)
