"""Faults on the transfer alone (``balance-transfers-post``) or on its listing alone
(``balance-transfers-list``), over real HTTP."""

from __future__ import annotations

from collections.abc import AsyncIterator
from decimal import Decimal

import pytest

from tests.simctl import inject_fault, sim_state
from topup_guard.config import DEMO_API_KEY, DEMO_API_SECRET
from topup_guard.errors import ServerError
from topup_guard.sim import RunningSimulator
from topup_guard.vonage.client import VonageClient

START = "2000-01-01T00:00:00Z"


@pytest.fixture
async def vonage(sim: RunningSimulator) -> AsyncIterator[VonageClient]:
    sim.account.add_subaccount("sub00001", balance=Decimal(1))
    async with VonageClient(
        DEMO_API_KEY, DEMO_API_SECRET, rest_url=sim.url, api_url=sim.url
    ) as client:
        yield client


async def test_a_listing_fault_spares_the_transfer_and_fails_the_listing(
    sim: RunningSimulator, vonage: VonageClient
) -> None:
    await inject_fault(sim, endpoint="balance-transfers-list", kind="error_500_before")
    moved = await vonage.transfer_balance(DEMO_API_KEY, "sub00001", Decimal(2), "ref-1")
    assert moved.reference == "ref-1"
    assert (await sim_state(sim))["faults"] != [], "the POST must not take a listing fault"
    with pytest.raises(ServerError):
        await vonage.list_balance_transfers(START, subaccount="sub00001")
    (listed,) = await vonage.list_balance_transfers(START, subaccount="sub00001")
    assert listed.id == moved.id


async def test_a_fault_on_balance_transfers_still_hits_whichever_call_comes_next(
    sim: RunningSimulator, vonage: VonageClient
) -> None:
    await inject_fault(sim, endpoint="balance-transfers", kind="error_500_before")
    with pytest.raises(ServerError):
        await vonage.list_balance_transfers(START)
    await vonage.transfer_balance(DEMO_API_KEY, "sub00001", Decimal(2), "ref-2")
    assert len(sim.account.transfers) == 1


async def test_a_listing_fault_outranks_a_wildcard(
    sim: RunningSimulator, vonage: VonageClient
) -> None:
    await inject_fault(sim, endpoint="*", kind="error_500_before")
    await inject_fault(sim, endpoint="balance-transfers-list", kind="rate_limit")
    with pytest.raises(Exception, match="rate limit"):
        await vonage.list_balance_transfers(START)
    assert [f["kind"] for f in (await sim_state(sim))["faults"]] == ["error_500_before"]


async def test_a_transfer_fault_spares_the_listing(
    sim: RunningSimulator, vonage: VonageClient
) -> None:
    await inject_fault(sim, endpoint="balance-transfers-post", kind="error_500_after", count=2)
    assert await vonage.list_balance_transfers(START) == []
    for _ in range(2):
        with pytest.raises(ServerError):
            await vonage.transfer_balance(DEMO_API_KEY, "sub00001", Decimal(2), "ref-3")
    assert len(sim.account.transfers) == 2, "error_500_after applies each one"
    assert (await sim_state(sim))["faults"] == []
