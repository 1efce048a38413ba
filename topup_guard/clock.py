"""One clock abstraction: the system clock in production, a virtual one in tests and backtests.

``now()`` is monotonic seconds used for scheduling and spend rates; ``wall()`` is Unix time used
only for the ledger's timestamps and cap windows. ``sleep()`` wakes early when ``wake`` is set, so
shutdown never waits for a poll period to end.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Protocol


class Clock(Protocol):
    def now(self) -> float:
        """Monotonic seconds."""

    def wall(self) -> float:
        """Unix seconds (may jump; never used for scheduling)."""

    async def sleep(self, seconds: float, wake: asyncio.Event | None = None) -> bool:
        """Sleep ``seconds``; return True if ``wake`` was set before the time was up."""


class SystemClock:
    def now(self) -> float:
        return time.monotonic()

    def wall(self) -> float:
        return time.time()

    async def sleep(self, seconds: float, wake: asyncio.Event | None = None) -> bool:
        if wake is None:
            await asyncio.sleep(max(0.0, seconds))
            return False
        if wake.is_set():
            return True
        # asyncio.timeout, not wait_for: no extra task per sleep (this runs every poll).
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(max(0.0, seconds)):
                await wake.wait()
        return wake.is_set()


class VirtualClock:
    """Time moves only when someone sleeps: an hour of polling runs in milliseconds.

    Meant for one driving task (the engine in a test, or the backtest): each ``sleep`` advances
    time by exactly its duration. ``wall()`` is ``now()`` plus a fixed epoch, shiftable with
    ``jump_wall`` to test a wall clock that jumps while monotonic time does not.
    """

    def __init__(self, start: float = 0.0, epoch: float = 1_800_000_000.0) -> None:
        self._now = start
        self._wall_offset = epoch

    def now(self) -> float:
        return self._now

    def wall(self) -> float:
        return self._now + self._wall_offset

    def advance(self, seconds: float) -> None:
        if seconds > 0:
            self._now += seconds

    def jump_wall(self, seconds: float) -> None:
        self._wall_offset += seconds

    async def sleep(self, seconds: float, wake: asyncio.Event | None = None) -> bool:
        if wake is not None and wake.is_set():
            return True
        self.advance(seconds)
        await asyncio.sleep(0)  # let other tasks (and a shutdown request) run
        return wake is not None and wake.is_set()
