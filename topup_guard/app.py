"""The composition root: builds the real collaborators from Settings and runs the guard.

Everything the engine uses is built here and only here, so tests and the demo can build the same
graph with fakes or a local simulator instead (STYLE: inject every collaborator).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from opentelemetry import trace

from topup_guard.clock import Clock, SystemClock
from topup_guard.config import SECRET_FIELDS, Settings
from topup_guard.coordination import Coordinator, SoleGuard
from topup_guard.engine import Engine
from topup_guard.errors import ConfigError
from topup_guard.events import Fanout
from topup_guard.health import HealthServer
from topup_guard.ledger.base import Ledger
from topup_guard.ledger.sqlite import SqliteLedger
from topup_guard.logs import LogSink, register_secret, setup_logging
from topup_guard.memory_file import MemoryFile
from topup_guard.notify import Dispatcher
from topup_guard.notify.build import build_dispatcher
from topup_guard.signals.inbox import SignalInbox
from topup_guard.status import GuardStatus
from topup_guard.telemetry import Telemetry, setup_telemetry
from topup_guard.topup import AccountAPI, SafeTopUp
from topup_guard.vonage.client import VonageClient

if TYPE_CHECKING:  # aiohttp.web, imported only when the signal server is on
    from topup_guard.fleet.guard import FleetGuard
    from topup_guard.signals.server import SignalServer

log = logging.getLogger("topup_guard.app")
# SIGTERM to exit within 10 s, whatever is in flight: the loop gets this long to finish a POST
# on the wire, then it is cancelled (its PENDING entry is settled by the next start), and the
# rest of the shutdown is bounded by what is left.
SHUTDOWN_LOOP_GRACE = 5.0
SHUTDOWN_STEP_TIMEOUT = 1.5


@dataclass
class Guard:
    """Everything ``run`` starts and stops, in one place."""

    settings: Settings
    engine: Engine
    client: VonageClient
    ledger: Ledger
    coordinator: Coordinator
    telemetry: Telemetry
    notifier: Dispatcher
    health: HealthServer | None
    status: GuardStatus
    sinks: Fanout = field(default_factory=Fanout)
    signal: SignalServer | None = None
    fleet: FleetGuard | None = None  # fleet mode: this loop runs instead of ``engine.run``

    def loop(self, stop: asyncio.Event) -> Coroutine[Any, Any, None]:
        return self.fleet.run(stop) if self.fleet is not None else self.engine.run(stop)

    async def start(self) -> None:
        await self.coordinator.start()
        if self.fleet is not None:
            await self.fleet.start()
        await self.notifier.start()
        if self.health is not None:
            try:
                await self.health.start()
            except OSError as exc:  # port taken or address not local: a setting to fix, exit 2
                where = f"{self.health.host}:{self.health.port}"
                why = os.strerror(exc.errno).lower() if exc.errno else type(exc).__name__
                raise ConfigError(
                    [
                        f"TOPUP_GUARD_HEALTH_PORT: cannot listen on {where} ({why}); choose a "
                        "free port, or 0 to turn the health server off (for example "
                        "TOPUP_GUARD_HEALTH_PORT=8080)"
                    ]
                ) from None
        if self.signal is not None:
            try:
                await self.signal.start()
            except OSError as exc:  # as for the health port: a setting to fix, exit 2
                where = f"{self.signal.host}:{self.signal.port}"
                why = os.strerror(exc.errno).lower() if exc.errno else type(exc).__name__
                raise ConfigError(
                    [
                        f"TOPUP_GUARD_SIGNAL_PORT: cannot listen on {where} ({why}); choose a "
                        "free port, or 0 to turn the signal endpoint off (for example "
                        "TOPUP_GUARD_SIGNAL_PORT=8081)"
                    ]
                ) from None

    async def stop(self) -> None:
        # Telemetry last, so the stop itself is recorded; each step bounded so exit never hangs.
        steps = [self.coordinator.stop(), self.notifier.stop(timeout=SHUTDOWN_STEP_TIMEOUT)]
        if self.signal is not None:
            steps.append(self.signal.stop())
        if self.health is not None:
            steps.append(self.health.stop())
        if self.fleet is not None:
            steps.append(self.fleet.close())
        steps += [self.client.close(), self.ledger.close(), self.telemetry.aclose()]
        for step in steps:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(SHUTDOWN_STEP_TIMEOUT):
                    await step


def build_coordinator(settings: Settings) -> tuple[Coordinator, Ledger]:
    """Redis lease and shared ledger when TOPUP_GUARD_REDIS_URL is set, else SQLite alone."""
    if settings.redis_url is not None:
        from topup_guard.ledger.redis import build_redis_coordination

        return build_redis_coordination(settings)
    log.warning(
        "single_replica_only",
        extra={"detail": "no TOPUP_GUARD_REDIS_URL: only ONE replica of the guard may run"},
    )
    return SoleGuard(), SqliteLedger(settings.state_path, account=settings.api_key or "")


def build_safe_topup(
    settings: Settings,
    api: AccountAPI,
    coordinator: Coordinator,
    ledger: Ledger,
    clock: Clock,
    tracer: trace.Tracer | None = None,
) -> SafeTopUp:
    """The one path that charges the card: the guard's loop and the CLI's ``top-up`` alike."""
    settings.require("trx")
    return SafeTopUp(
        api,
        ledger,
        coordinator,
        clock,
        trx=settings.secret("trx"),
        dry_run=settings.dry_run,
        tracer=tracer,
    )


def build_signal_server(
    settings: Settings, inbox: SignalInbox, telemetry: Telemetry
) -> SignalServer | None:
    """The ``/v1/signals/*`` server feeding ``inbox``; None when TOPUP_GUARD_SIGNAL_PORT=0."""
    if not settings.signal_port:
        return None
    from topup_guard.signals.server import SignalServer

    token = settings.signal_token
    return SignalServer(
        inbox,
        host=settings.signal_host,
        port=settings.signal_port,
        token=token.get_secret_value() if token is not None else None,
        instruments=telemetry.signals,
    )


def build_guard(settings: Settings, *, clock: Clock | None = None) -> Guard:
    settings.require("api_key", "api_secret", "trx")
    for name in SECRET_FIELDS:
        value = getattr(settings, name)
        if value is not None:
            register_secret(value.get_secret_value())
    if settings.signal_token is not None:
        register_secret(settings.signal_token.get_secret_value())
    clock = clock or SystemClock()
    telemetry = setup_telemetry()
    coordinator, ledger = build_coordinator(settings)
    client = VonageClient(
        settings.api_key or "",
        settings.secret("api_secret"),
        rest_url=settings.rest_url,
        api_url=settings.api_url,
        timeout=settings.http_timeout,
        observer=telemetry.observe_call,
        tracer=telemetry.tracer,
        keepalive_reads=True,  # the poll's read without aiohttp's per-request machinery
    )
    notifier = build_dispatcher(
        settings,
        clock=clock,
        count=lambda channel, result, _kind: telemetry.count_notification(channel, result),
    )
    status = GuardStatus()
    sinks = Fanout([LogSink(), telemetry.sink, notifier])
    tracer = telemetry.tracer if hasattr(telemetry, "tracer") else trace.get_tracer("topup_guard")
    safe = build_safe_topup(settings, client, coordinator, ledger, clock, tracer)
    inbox = SignalInbox()  # what senders report; the engine drains it (issue 12)
    fleet = None
    if settings.fleet_file is not None:
        from topup_guard.fleet.build import build_fleet  # fleet mode only

        fleet = build_fleet(settings, client=client, coordinator=coordinator, ledger=ledger,
                            safe=safe, clock=clock, sink=sinks, status=status,
                            tracer=tracer)  # fmt: skip
        engine = fleet.primary
    else:
        engine = Engine(
            api=client,
            ledger=ledger,
            clock=clock,
            settings=settings,
            sink=sinks,
            status=status,
            coordinator=coordinator,
            tracer=tracer,
            account_label=settings.api_key or "",
            safe=safe,
            memory_file=MemoryFile.beside(settings.state_path),
            inbox=inbox if settings.signal_port else None,
        )
    health = None
    if settings.health_port:
        health = HealthServer(
            status,
            clock,
            host=settings.health_host,
            port=settings.health_port,
            poll_interval=settings.poll_interval,
            metrics=telemetry.render_prometheus,
        )
    return Guard(
        settings, engine, client, ledger, coordinator, telemetry, notifier, health, status, sinks,
        signal=build_signal_server(settings, inbox, telemetry) if fleet is None else None,
        fleet=fleet,
    )  # fmt: skip


async def run_guard(settings: Settings, *, stop: asyncio.Event | None = None) -> int:
    """``topup-guard run``: until SIGTERM/SIGINT; a top-up in flight is finished first."""
    setup_logging(settings.log_format, settings.log_level)
    guard = build_guard(settings)
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    try:
        await guard.start()
        loop_task = asyncio.create_task(guard.loop(stop), name="topup-guard-loop")
        stopping = asyncio.create_task(stop.wait())
        await asyncio.wait({loop_task, stopping}, return_when=asyncio.FIRST_COMPLETED)
        stopping.cancel()
        if not loop_task.done():
            # Stop requested: a POST on the wire may finish; nothing waits for verification.
            await asyncio.wait({loop_task}, timeout=SHUTDOWN_LOOP_GRACE)
        if not loop_task.done():
            log.warning("shutdown_cut_short", extra={
                "detail": "a top-up request was still on the wire; its ledger entry stays "
                "open and is settled by the balance at the next start"})  # fmt: skip
            loop_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await loop_task
    finally:
        await guard.stop()
    return 0
