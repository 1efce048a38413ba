"""Fixtures for the transfer tests: a simulator with three own-balance subaccounts and one that
shares the primary's balance, a real ``VonageClient`` on it, and a transfer ledger file."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from decimal import Decimal
from pathlib import Path

import pytest

from tests.conftest import DEMO_CREDENTIALS, QUIET_SCENARIO
from topup_guard import retry
from topup_guard.config import DEMO_API_KEY, DEMO_API_SECRET
from topup_guard.fleet.transfer_ledger import SqliteTransferLedger
from topup_guard.sim import RunningSimulator, start_simulator
from topup_guard.vonage.client import VonageClient

SUBS = ("sub00001", "sub00002", "sub00003")
SHARED = "shared01"


@pytest.fixture(autouse=True)
def _no_backoff() -> Iterator[None]:
    retry.set_testing(True)  # waits off (Retry-After included); every bound still applies
    yield
    retry.set_testing(False)


@pytest.fixture
async def fleet_sim() -> AsyncIterator[RunningSimulator]:
    """The simulator (primary EUR 100) with SUBS at EUR 1 each and SHARED on the primary's."""
    running = await start_simulator(
        "127.0.0.1", 0, scenario=QUIET_SCENARIO, credentials=DEMO_CREDENTIALS
    )
    for key in SUBS:
        running.account.add_subaccount(key, name=f"Customer {key}", balance=Decimal(1))
    running.account.add_subaccount(SHARED, name="Shared")
    try:
        yield running
    finally:
        await running.stop()


@pytest.fixture
async def vonage(fleet_sim: RunningSimulator) -> AsyncIterator[VonageClient]:
    """The real client against the simulator; a 1 s timeout so ``timeout_after`` is quick."""
    async with VonageClient(
        DEMO_API_KEY, DEMO_API_SECRET, rest_url=fleet_sim.url, api_url=fleet_sim.url, timeout=1.0
    ) as client:
        yield client


@pytest.fixture
async def ledger(tmp_path: Path) -> AsyncIterator[SqliteTransferLedger]:
    store = SqliteTransferLedger(tmp_path / "state.sqlite")
    try:
        yield store
    finally:
        await store.close()
