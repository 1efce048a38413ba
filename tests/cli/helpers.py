"""Helpers for CLI tests: a fake terminal, a clean environment, the simulator's control API."""

from __future__ import annotations

import io
import os
from collections.abc import Callable, Coroutine
from typing import Any

import pytest

from topup_guard.config import DEMO_API_KEY
from topup_guard.sim import RunningSimulator

Run = Callable[..., Coroutine[Any, Any, tuple[int, str, str]]]
"""The ``cli`` fixture: ``await cli(*argv, stdin=...)`` -> (exit code, stdout, stderr)."""


class FakeTty(io.StringIO):
    """A stdin that claims to be a terminal, with the user's typed answers."""

    def isatty(self) -> bool:
        return True


def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No variable of the developer's shell may leak into a test."""
    for name in list(os.environ):
        if name.startswith(("TOPUP_GUARD_", "VONAGE_")):
            monkeypatch.delenv(name)


def secret_ids(sim: RunningSimulator) -> list[str]:
    return [s.id for s in sim.account.secrets_of(DEMO_API_KEY).list()]
