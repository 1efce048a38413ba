"""Every transfer fault, over real HTTP against the simulator: each subaccount that needs money gets
it exactly once, however the POST and the listing fail, over repeated settle/send rounds.

The driver is the fleet loop in miniature: each round settles what is in doubt, reads every
balance in one list call, and sends one transfer to each subaccount still below its floor. The
invariants after every run: transfers applied at the simulator = SUCCEEDED entries in the
ledger (matched by reference, none twice), no entry left in doubt, every account funded.
"""

from __future__ import annotations

import asyncio
import random
from decimal import Decimal

import aiohttp
import pytest

from tests.fleet.conftest import SUBS
from tests.simctl import inject_fault, sim_state
from topup_guard.clock import SystemClock
from topup_guard.config import DEMO_API_KEY
from topup_guard.coordination import SoleGuard
from topup_guard.fleet.transfer import SafeTransfer, TransferOutcome
from topup_guard.fleet.transfer_ledger import SqliteTransferLedger, TransferLedger, TransferState
from topup_guard.sim import RunningSimulator
from topup_guard.vonage.client import VonageClient

POST_KINDS = ("error_500_before", "error_500_after", "timeout_after", "reset_before",
              "reset_after", "malformed_json", "rate_limit")  # fmt: skip
LIST_KINDS = (*POST_KINDS, "html_error", "empty_body")
FLOOR = Decimal(5)
AMOUNT = Decimal(10)
VERIFY_AFTER = 0.2  # seconds; the production 5 s rule, shortened so the suite stays fast


def safe_transfer(vonage: VonageClient, ledger: SqliteTransferLedger, **kw: float) -> SafeTransfer:
    return SafeTransfer(vonage, ledger, SoleGuard("test:1"), SystemClock(),
                        primary_key=DEMO_API_KEY, verify_after_s=VERIFY_AFTER, **kw)  # fmt: skip


async def funding_rounds(
    safe: SafeTransfer, vonage: VonageClient, accounts: tuple[str, ...], rounds: int = 40
) -> list[TransferOutcome]:
    """Settle, read balances, fund whoever is below the floor; until all are funded and
    nothing is in doubt. Returns every send's outcome."""
    outcomes: list[TransferOutcome] = []
    for _ in range(rounds):
        await safe.settle_open()
        try:
            overview = await vonage.list_subaccounts()
        except Exception:  # a failed read skips the round, as the loop would
            await asyncio.sleep(0.05)
            continue
        low = [s.api_key for s in overview.subaccounts if s.api_key in accounts
               and s.balance is not None and s.balance < FLOOR]  # fmt: skip
        if not low and not await safe.ledger.in_doubt():
            return outcomes
        for account in low:
            outcomes.append((await safe.send(account, AMOUNT, "below the floor")).outcome)
        await asyncio.sleep(VERIFY_AFTER / 2)
    raise AssertionError(f"not settled after {rounds} rounds: {await safe.ledger.in_doubt()}")


async def clear_faults(sim: RunningSimulator) -> None:
    async with aiohttp.ClientSession() as s, s.delete(sim.url + "/_sim/faults") as r:
        assert r.status == 200


async def check_exactly_once(
    sim: RunningSimulator, ledger: TransferLedger, accounts: tuple[str, ...]
) -> None:
    applied = [t for t in sim.account.transfers if t.to_key in accounts]
    entries = await ledger.latest(1000)
    succeeded = [e for e in entries if e.state is TransferState.SUCCEEDED]
    assert await ledger.in_doubt() == [], "every entry must end settled"
    assert sorted(t.reference or "" for t in applied) == sorted(e.reference for e in succeeded), (
        "transfers applied at the simulator must be exactly the SUCCEEDED entries"
    )
    assert len({t.reference for t in applied}) == len(applied), "no reference applied twice"
    for account in accounts:
        assert [e.account for e in succeeded].count(account) == 1, f"{account} funded once"
        assert sim.account.subaccounts[account].balance == Decimal(1) + AMOUNT
    for e in succeeded:
        assert e.vonage_id, "a SUCCEEDED entry keeps Vonage's id"


@pytest.mark.parametrize("count", [1, 3])
@pytest.mark.parametrize("kind", POST_KINDS)
async def test_a_fault_on_the_transfer_still_moves_the_money_exactly_once(
    kind: str, count: int, fleet_sim: RunningSimulator, vonage: VonageClient,
    ledger: SqliteTransferLedger,
) -> None:  # fmt: skip
    accounts = SUBS[:count]  # a burst of three: three accounts to fund, so three POSTs at least
    await inject_fault(fleet_sim, endpoint="balance-transfers-post", kind=kind, count=count,
                       delay=2.0)  # fmt: skip
    outcomes = await funding_rounds(safe_transfer(vonage, ledger), vonage, accounts)
    assert (await sim_state(fleet_sim))["faults"] == [], "every fault must have been hit"
    await check_exactly_once(fleet_sim, ledger, accounts)
    if kind != "rate_limit":  # a 429 is resent at once (it was refused unprocessed)
        assert outcomes.count(TransferOutcome.AMBIGUOUS) == count


@pytest.mark.parametrize("kind", LIST_KINDS)
async def test_a_failing_listing_keeps_the_doubt_and_blocks_only_that_account(
    kind: str, fleet_sim: RunningSimulator, vonage: VonageClient, ledger: SqliteTransferLedger
) -> None:
    safe = safe_transfer(vonage, ledger)
    await inject_fault(fleet_sim, endpoint="balance-transfers", kind="error_500_after")
    first = await safe.send("sub00001", AMOUNT, "below the floor")
    assert first.outcome is TransferOutcome.AMBIGUOUS
    await inject_fault(fleet_sim, endpoint="balance-transfers-list", kind=kind, count=4, delay=2.0)
    await asyncio.sleep(VERIFY_AFTER)
    while (await sim_state(fleet_sim))["faults"]:
        await safe.settle_open()
        if (await sim_state(fleet_sim))["faults"]:  # every listing of that call failed
            (doubt,) = await ledger.in_doubt()
            assert doubt.state is TransferState.UNKNOWN
            again = await safe.send("sub00001", AMOUNT, "still low")
            assert again.outcome is TransferOutcome.NOT_STARTED
            assert "sub00001" in again.detail
    other = await safe.send("sub00002", AMOUNT, "below the floor")
    assert other.outcome is TransferOutcome.APPLIED, "another account is never blocked"
    await funding_rounds(safe, vonage, SUBS[:2])
    await check_exactly_once(fleet_sim, ledger, SUBS[:2])


async def test_a_listing_failing_for_the_whole_settle_window_leaves_it_unconfirmed_until_one_works(
    fleet_sim: RunningSimulator, vonage: VonageClient, ledger: SqliteTransferLedger
) -> None:
    safe = safe_transfer(vonage, ledger, settle_window_s=0.5)
    await inject_fault(fleet_sim, endpoint="balance-transfers", kind="reset_after")
    await safe.send("sub00001", AMOUNT, "below the floor")
    await inject_fault(fleet_sim, endpoint="balance-transfers-list", kind="error_500_before",
                       count=1000)  # fmt: skip
    await asyncio.sleep(0.6)
    (changed,) = await safe.settle_open()
    assert changed.state is TransferState.UNCONFIRMED
    assert "listing failed" in changed.detail
    refused = await safe.send("sub00001", AMOUNT, "still low")
    assert refused.outcome is TransferOutcome.NOT_STARTED, "no new transfer while in doubt"
    assert await safe.settle_open() == [], "UNCONFIRMED is written once"
    await clear_faults(fleet_sim)
    (settled,) = await safe.settle_open()
    assert settled.state is TransferState.SUCCEEDED
    await check_exactly_once(fleet_sim, ledger, SUBS[:1])


async def test_random_mixes_of_faults_on_transfers_listings_and_balances(
    fleet_sim: RunningSimulator, vonage: VonageClient, ledger: SqliteTransferLedger
) -> None:
    rng = random.Random(13)
    safe = safe_transfer(vonage, ledger)
    for _ in range(3):  # three waves: every subaccount drained and funded again
        for key in SUBS:
            fleet_sim.account.subaccounts[key].balance = Decimal(1)
        mix = [{"endpoint": rng.choice(["balance-transfers", "balance-transfers-list",
                                        "subaccounts"]),
                "kind": rng.choice(POST_KINDS), "count": rng.randint(1, 2), "delay": 2.0}
               for _ in range(4)]  # fmt: skip
        for fault in mix:
            await inject_fault(fleet_sim, **fault)
        await funding_rounds(safe, vonage, SUBS, rounds=80)
        await clear_faults(fleet_sim)
    applied = fleet_sim.account.transfers
    succeeded = [e for e in await ledger.latest(1000) if e.state is TransferState.SUCCEEDED]
    assert sorted(t.reference or "" for t in applied) == sorted(e.reference for e in succeeded)
    assert len(succeeded) == 3 * len(SUBS)
    assert await ledger.in_doubt() == []


@pytest.mark.parametrize("kind", ["error_500_before", "timeout_after"])
async def test_concurrent_sends_and_settling_never_double_a_transfer(
    kind: str, fleet_sim: RunningSimulator, vonage: VonageClient, ledger: SqliteTransferLedger
) -> None:
    safe = safe_transfer(vonage, ledger)
    await inject_fault(fleet_sim, endpoint="balance-transfers", kind=kind, count=2, delay=2.0)
    subs = fleet_sim.account.subaccounts
    for _ in range(6):  # the loop fans out: every low account at once, settling alongside
        low = [a for a in SUBS if (subs[a].balance or 0) < FLOOR]
        await asyncio.gather(
            safe.settle_open(), *(safe.send(a, AMOUNT, "below the floor") for a in low),
            safe.settle_open(),
        )  # fmt: skip
        await asyncio.sleep(VERIFY_AFTER)
    await funding_rounds(safe, vonage, SUBS)
    await check_exactly_once(fleet_sim, ledger, SUBS)
