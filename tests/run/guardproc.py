"""Run ``topup-guard run`` as a real child process against servers in the test's event loop.

The simulator, the Slack and OTLP receivers all serve in the test's own loop, so the child is
spawned with asyncio's subprocess API (never ``subprocess.run``, which would block the loop the
servers need). Its stdout and stderr are read continuously into line lists: the pipes never fill,
and a test can wait for a log event (``await guard.event("guard_started")``) instead of sleeping.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sqlite3
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import aiohttp

from topup_guard.config import DEMO_API_KEY, DEMO_API_SECRET, DEMO_TRX
from topup_guard.sim import RunningSimulator

_OWN_PREFIXES = ("TOPUP_GUARD_", "VONAGE_", "OTEL_")


def free_port() -> int:
    """A port nobody listens on right now (the guard binds it a moment later)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def guard_env(
    sim: RunningSimulator | None,
    state_path: Path,
    *,
    api_key: str = DEMO_API_KEY,
    api_secret: str = DEMO_API_SECRET,
    trx: str = DEMO_TRX,
    health_port: int | str = 0,
    **extra: str,
) -> dict[str, str]:
    """The child's whole environment: the parent's minus every guard/Vonage/OTel variable.

    Short intervals (poll 0.5 s..1 s, settle 3 s) keep each run to a few seconds; OTel is off
    unless ``extra`` turns it on, so no child ever tries to reach a default collector.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith(_OWN_PREFIXES)}
    env.update(
        VONAGE_API_KEY=api_key,
        VONAGE_API_SECRET=api_secret,
        TOPUP_GUARD_TRX=trx,
        TOPUP_GUARD_STATE_PATH=str(state_path),
        TOPUP_GUARD_POLL_MIN="0.5",
        TOPUP_GUARD_POLL_INTERVAL="1",
        TOPUP_GUARD_SETTLE_WINDOW="3",
        # One top-up is what a low balance needs in these runs: no reserve beyond the rate's
        # headroom (the one-top-up reserve has its own tests).
        TOPUP_GUARD_MIN_HEADROOM="0",
        TOPUP_GUARD_HTTP_TIMEOUT="5",
        TOPUP_GUARD_HEALTH_HOST="127.0.0.1",
        TOPUP_GUARD_HEALTH_PORT=str(health_port),
        TOPUP_GUARD_SIGNAL_PORT="0",  # off unless a test asks: parallel runs must not share 8081
        TOPUP_GUARD_LOG_FORMAT="json",
        OTEL_SDK_DISABLED="true",
        PYTHONUNBUFFERED="1",
    )
    if sim is not None:
        env.update(TOPUP_GUARD_REST_URL=sim.url, TOPUP_GUARD_API_URL=sim.url)
    env.update(extra)
    return env


class GuardProcess:
    """One ``python -m topup_guard <args>`` child with its output captured line by line."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.stdout: list[str] = []
        self.stderr: list[str] = []
        self._changed = asyncio.Condition()
        self._eof = 0  # streams at end of file: 2 means the child is gone
        assert proc.stdout is not None
        assert proc.stderr is not None
        self._readers = [
            asyncio.create_task(self._pump(proc.stdout, self.stdout)),
            asyncio.create_task(self._pump(proc.stderr, self.stderr)),
        ]

    @classmethod
    async def start(cls, env: Mapping[str, str], *args: str) -> GuardProcess:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "topup_guard",
            *(args or ("run",)),
            env=dict(env),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        return cls(proc)

    async def _pump(self, stream: asyncio.StreamReader, into: list[str]) -> None:
        while True:
            line = await stream.readline()
            if line:
                into.append(line.decode("utf-8", "replace").rstrip("\n"))
            async with self._changed:  # also at EOF, so waiters see the exit
                self._changed.notify_all()
            if not line:
                self._eof += 1
                return

    @property
    def output(self) -> str:
        """Everything the child wrote so far, stdout then stderr."""
        return "\n".join([*self.stdout, *self.stderr])

    def records(self) -> list[dict[str, Any]]:
        """The JSON log lines (stdout), parsed; a non-JSON line fails the test."""
        return [json.loads(line) for line in self.stdout if line.strip()]

    def events(self, name: str) -> list[dict[str, Any]]:
        return [r for r in self.records() if r.get("event") == name]

    async def event(self, name: str, timeout: float = 10.0) -> dict[str, Any]:
        """Wait for the first log record with ``event == name``."""

        def found() -> bool:
            return bool(self.events(name)) or self._eof == 2

        async with asyncio.timeout(timeout), self._changed:
            await self._changed.wait_for(found)
        hits = self.events(name)
        assert hits, f"{name!r} never logged; the guard exited:\n{self.output}"
        return hits[0]

    async def terminate(self, timeout: float = 10.0) -> tuple[int, float]:
        """SIGTERM; returns (exit code, seconds from signal to exit)."""
        started = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        code = await self.wait(timeout)
        return code, time.monotonic() - started

    async def wait(self, timeout: float = 10.0) -> int:
        try:
            async with asyncio.timeout(timeout):
                code = await self.proc.wait()
                await asyncio.gather(*self._readers)
        except TimeoutError:
            self.kill()
            message = f"the guard did not exit within {timeout} s:\n{self.output}"
            raise AssertionError(message) from None
        return code

    def kill(self) -> None:
        if self.proc.returncode is None:
            self.proc.kill()


async def get(url: str) -> tuple[int, str]:
    """One GET: (status, body text)."""
    timeout = aiohttp.ClientTimeout(total=5)
    async with aiohttp.ClientSession(timeout=timeout) as s, s.get(url) as r:
        return r.status, await r.text()


def ledger_states(path: Path) -> list[tuple[int, str]]:
    """Every (attempt_id, state) event the child wrote, oldest first, read-only."""
    if not path.exists():
        return []
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5.0)
    try:
        rows = db.execute("SELECT attempt_id, state FROM ledger_events ORDER BY seq").fetchall()
    except sqlite3.OperationalError:  # the child has not created the schema yet
        return []
    finally:
        db.close()
    return [(int(a), str(s)) for a, s in rows]


async def until(check: Any, timeout: float = 10.0, every: float = 0.05) -> None:
    """Poll ``check()`` (sync or async) until it is truthy."""
    async with asyncio.timeout(timeout):
        while True:
            result = check()
            if asyncio.iscoroutine(result):
                result = await result
            if result:
                return
            await asyncio.sleep(every)
