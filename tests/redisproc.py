"""A real redis-server process for tests (127.0.0.1, free port), stoppable for outages.

Shared by ``tests/coordination`` (lease and ledger against Redis) and ``tests/replicas`` (several
``topup-guard run`` processes against one Redis). The ``redis_server`` fixture in
``tests/conftest.py`` builds one per test and *fails* when the binary is missing, saying how to
install it (``make test`` installs it first: ``scripts/test-deps.sh``).
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

REDIS_SERVER = shutil.which("redis-server")
MISSING = (
    "redis-server is not installed, so the Redis tests cannot run (they never skip): run "
    "`make test-deps` (as root it installs the Debian package) or `apt-get install redis-server`"
)


def redis_binary() -> str:
    """The redis-server binary, or a test failure saying how to install it."""
    if REDIS_SERVER is None:
        pytest.fail(MISSING)
    return REDIS_SERVER


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _answers_ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
    except OSError:
        return False


class RedisServer:
    """One redis-server process; ``stop()`` and ``start()`` simulate an outage on the same port.

    Without ``data_dir`` nothing persists, so a restart is also a data loss. With it, Redis runs
    as the README asks for production (``appendonly yes``), and ``appendfsync always`` so that even
    the ``kill -9`` of ``stop()`` loses no write: the data survives the outage.
    """

    def __init__(self, binary: str, *, data_dir: Path | None = None) -> None:
        self.binary = binary
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.data_dir = data_dir
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def running(self) -> bool:
        return self._proc is not None

    def start(self) -> None:
        assert self._proc is None, "already running"
        args = ["--port", str(self.port), "--bind", "127.0.0.1", "--save", ""]
        if self.data_dir is None:
            args += ["--appendonly", "no"]
        else:
            args += ["--appendonly", "yes", "--appendfsync", "always", "--dir", str(self.data_dir)]
        self._proc = subprocess.Popen(
            [self.binary, *args],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while not _answers_ping(self.port):
            if self._proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                pytest.fail(f"redis-server did not come up on port {self.port}")
            time.sleep(0.01)

    def stop(self) -> None:
        """``kill -9``: no shutdown save, connections reset, as when a node dies."""
        if self._proc is None:
            return
        self._proc.kill()
        self._proc.wait(timeout=10)
        self._proc = None
