"""A real signal server on a free loopback port, with in-memory metrics, for the signal tests."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from topup_guard.signals.inbox import SignalInbox
from topup_guard.signals.metrics import SignalInstruments
from topup_guard.signals.server import SignalServer

TOKEN = "t0ken-for-tests-0123456789"
NOW = 1_800_000_000.0


@dataclass
class Running:
    server: SignalServer
    inbox: SignalInbox
    reader: InMemoryMetricReader
    http: aiohttp.ClientSession

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.port}"

    def metric(self, name: str) -> dict[tuple[tuple[str, str], ...], float]:
        """Current points of one instrument, keyed by their sorted attributes."""
        out: dict[tuple[tuple[str, str], ...], float] = {}
        data = self.reader.get_metrics_data()
        for rm in data.resource_metrics if data else []:
            for sm in rm.scope_metrics:
                for m in sm.metrics:
                    if m.name == name:
                        for point in m.data.data_points:
                            key = tuple(sorted((k, str(v)) for k, v in point.attributes.items()))
                            out[key] = point.value
        return out

    def rejected(self, reason: str) -> float:
        return self.metric("topup_guard.signals_rejected").get((("reason", reason),), 0)

    def received(self, kind: str) -> float:
        return self.metric("topup_guard.signals_received").get((("kind", kind),), 0)


@pytest.fixture
async def start_signal() -> AsyncIterator[Callable[..., Awaitable[Running]]]:
    """``await start_signal(token=..., queue_size=...)``: a started server; all stopped after."""
    started: list[Running] = []

    async def start(max_readings: int = 1024, **kwargs: Any) -> Running:
        reader = InMemoryMetricReader()
        instruments = SignalInstruments(MeterProvider([reader]).get_meter("t"))
        inbox = SignalInbox(max_readings)
        kwargs.setdefault("wall", lambda: NOW)
        server = SignalServer(inbox, host="127.0.0.1", port=0, instruments=instruments, **kwargs)
        await server.start()
        running = Running(server, inbox, reader, aiohttp.ClientSession())
        started.append(running)
        return running

    yield start
    for running in started:
        await running.http.close()
        await running.server.stop()


@pytest.fixture
async def signal(start_signal: Callable[..., Awaitable[Running]]) -> Running:
    """A server without a token (loopback)."""
    return await start_signal()


@pytest.fixture
async def guarded(start_signal: Callable[..., Awaitable[Running]]) -> Running:
    """A server that requires ``TOKEN``."""
    return await start_signal(token=TOKEN)
