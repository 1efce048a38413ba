"""The hand-off between the signal server and the engine: what senders reported since the last look.

Pure asyncio, no I/O. The server ``offer``s parsed signals; the engine sleeps on ``wake``, looks at
``urgent`` and ``drain``s. Everything is bounded: at most ``max_readings`` readings wait (the
oldest are dropped first, and counted, because the newest reading is the one that matters), and
the counters are plain integers.

A reading is a *claim* by whoever could reach the port, not evidence (see
``docs/send-path-signal.md`` §6): the engine may look sooner because of one, and it must never move
money on one. ``trusted`` says whether the claim came with the token (or from loopback while no
token is configured), so the engine can decide what a claim may relax.
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass
from decimal import Decimal

DEFAULT_MAX_READINGS = 1024


@dataclass(frozen=True, slots=True)
class SignalReading:
    """One balance the sender saw."""

    at_wall: float
    """Unix seconds the answer was produced (the ``at`` field), else its arrival time."""
    balance: Decimal
    trusted: bool
    """Arrived with a valid token (or no token is configured and the server is loopback-only)."""


@dataclass(frozen=True, slots=True)
class SignalBatch:
    """Everything since the last ``drain``."""

    readings: list[SignalReading]
    """In arrival order, at most ``max_readings`` (the newest)."""
    refusals: int
    """Out-of-credit refusals (SMS status 9, Messages 1070, a low-balance problem)."""
    successes: int
    """Messages accepted (SMS status 0): a sign that sending works again."""


@dataclass(frozen=True, slots=True)
class Signal:
    """One accepted request, as the server hands it over (already validated)."""

    readings: tuple[SignalReading, ...] = ()
    refusals: int = 0
    successes: int = 0


class SignalInbox:
    """Collects signals for the engine. Not thread-safe: use it from the event loop only."""

    def __init__(self, max_readings: int = DEFAULT_MAX_READINGS) -> None:
        if max_readings < 1:
            raise ValueError("max_readings must be at least 1")
        self.wake = asyncio.Event()
        """Set when anything arrives; the engine's sleep wakes on it (``drain`` clears it)."""
        self.urgent = False
        """True when a refusal arrived since the last drain."""
        self.last_reading_wall: float | None = None
        """The newest ``at_wall`` of any reading seen (drained or not): "samples are flowing"."""
        self.dropped = 0
        """Readings dropped, over the inbox's lifetime, because the engine did not drain."""
        self._readings: deque[SignalReading] = deque(maxlen=max_readings)
        self._refusals = 0
        self._successes = 0

    @property
    def pending(self) -> int:
        """Readings waiting for the next drain."""
        return len(self._readings)

    def offer(self, signal: Signal) -> None:
        """Take one validated signal; O(readings in it), never blocks, never grows unbounded."""
        room = self._readings.maxlen or 0
        overflow = len(self._readings) + len(signal.readings) - room
        if overflow > 0:
            self.dropped += overflow
        self._readings.extend(signal.readings)
        for reading in signal.readings:
            if self.last_reading_wall is None or reading.at_wall > self.last_reading_wall:
                self.last_reading_wall = reading.at_wall
        self._refusals += signal.refusals
        self._successes += signal.successes
        if signal.refusals:
            self.urgent = True
        if signal.readings or signal.refusals or signal.successes:
            self.wake.set()

    def drain(self) -> SignalBatch:
        """Return everything since the last drain and start afresh."""
        batch = SignalBatch(list(self._readings), self._refusals, self._successes)
        self._readings.clear()
        self._refusals = self._successes = 0
        self.urgent = False
        self.wake.clear()
        return batch


__all__ = ["DEFAULT_MAX_READINGS", "Signal", "SignalBatch", "SignalInbox", "SignalReading"]
