"""Fleet mode's part of the composition root: the fleet loop around the primary's engine.

Built by ``app.build_guard`` when ``TOPUP_GUARD_FLEET_FILE`` is set. The primary's engine is the
single-account engine itself (its safe top-up, ledger, caps and breaker), stepped by the fleet
loop with the primary's balance from the cycle's one list call instead of its own read.
"""

from __future__ import annotations

from opentelemetry import trace

from topup_guard.clock import Clock
from topup_guard.config import Settings
from topup_guard.coordination import Coordinator
from topup_guard.engine import Engine
from topup_guard.events import EventSink
from topup_guard.fleet.guard import FleetGuard
from topup_guard.fleet.rules import load_fleet_file
from topup_guard.fleet.transfer import SafeTransfer
from topup_guard.fleet.transfer_base import TransferLedger
from topup_guard.fleet.transfer_ledger import SqliteTransferLedger
from topup_guard.ledger.base import Ledger
from topup_guard.memory_file import MemoryFile
from topup_guard.policy.decide import PolicyParams
from topup_guard.status import GuardStatus
from topup_guard.topup import SafeTopUp
from topup_guard.vonage.client import VonageClient


def build_transfer_ledger(settings: Settings, ledger: Ledger) -> TransferLedger:
    """The transfer ledger where the top-up ledger is: the same SQLite file (its own tables: one
    volume, one backup, and a lost file takes both histories and both sets of caps, never one),
    or the same Redis, under the same lease and fencing epoch."""
    if settings.redis_url is not None:  # the Redis client is imported only when configured
        from topup_guard.fleet.transfer_redis import RedisTransferLedger
        from topup_guard.ledger.redis import RedisLedger

        assert isinstance(ledger, RedisLedger)
        return RedisTransferLedger(ledger.client, ledger.keys)
    return SqliteTransferLedger(settings.state_path)


def build_fleet(
    settings: Settings,
    *,
    client: VonageClient,
    coordinator: Coordinator,
    ledger: Ledger,
    safe: SafeTopUp,
    clock: Clock,
    sink: EventSink,
    status: GuardStatus,
    tracer: trace.Tracer,
) -> FleetGuard:
    assert settings.fleet_file is not None
    rules = load_fleet_file(settings.fleet_file)
    primary_sink = FleetGuard.primary_sink(sink)
    primary = Engine(
        api=client,
        ledger=ledger,
        clock=clock,
        settings=settings,
        sink=primary_sink,
        status=status,
        coordinator=coordinator,
        tracer=tracer,
        account_label=settings.api_key or "",
        safe=safe,
        memory_file=MemoryFile.beside(settings.state_path),
    )
    transfers_ledger = build_transfer_ledger(settings, ledger)
    transfers = SafeTransfer(
        client,
        transfers_ledger,
        coordinator,
        clock,
        primary_key=settings.api_key or "",
        dry_run=settings.dry_run,
        tracer=tracer,
    )
    return FleetGuard(
        api=client,
        primary=primary,
        primary_sink=primary_sink,
        transfers=transfers,
        ledger=transfers_ledger,
        rules=rules,
        clock=clock,
        sink=sink,
        params=PolicyParams.from_settings(settings),
        windows=(settings.rate_window_short, settings.rate_window_long),
        policy=settings.masked(),
        owns_ledger=isinstance(transfers_ledger, SqliteTransferLedger),
        dry_run=settings.dry_run,
        coordinator=coordinator,
        tracer=tracer,
    )
