"""The shared transfer ledger on a real redis-server: the SQLite contract, fenced by the lease."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from decimal import Decimal

import pytest
from redis.asyncio import Redis

from tests.fleet.conftest import SUBS
from tests.fleet.test_transfer_faults import POST_KINDS, check_exactly_once, funding_rounds
from tests.redisproc import RedisServer
from tests.simctl import inject_fault
from topup_guard.clock import SystemClock
from topup_guard.config import DEMO_API_KEY
from topup_guard.errors import LedgerError
from topup_guard.fleet.transfer import SafeTransfer
from topup_guard.fleet.transfer_ledger import TransferBusyError, TransferState
from topup_guard.fleet.transfer_redis import RedisTransferLedger
from topup_guard.ledger.base import FencedError
from topup_guard.ledger.redis import redis_client
from topup_guard.ledger.redis_lease import RedisKeys, RedisLease
from topup_guard.sim import RunningSimulator
from topup_guard.vonage.client import VonageClient

WALL = 1_800_000_000.25
TEN = Decimal(10)
KEYS = RedisKeys(DEMO_API_KEY)


@pytest.fixture
async def clients(redis_server: RedisServer) -> AsyncIterator[Callable[[], Redis]]:
    made: list[Redis] = []

    def make() -> Redis:
        made.append(redis_client(redis_server.url, timeout=0.5))
        return made[-1]

    yield make
    for client in made:
        await client.aclose()


@pytest.fixture
async def lease(clients: Callable[[], Redis]) -> AsyncIterator[RedisLease]:
    held = RedisLease(clients(), KEYS, ttl=60.0, holder="pod-0")
    await held.tick()
    assert held.may_spend()
    yield held
    await held.stop()


async def shared(clients: Callable[[], Redis]) -> RedisTransferLedger:
    return await RedisTransferLedger(clients(), KEYS).open()


async def begin(ledger: RedisTransferLedger, lease: RedisLease, account: str = "sub00001",
                **kw: object):  # type: ignore[no-untyped-def]  # fmt: skip
    args: dict[str, object] = {"amount": TEN, "reason": "low", "wall": WALL,
                               "epoch": lease.epoch, "holder": lease.holder}  # fmt: skip
    args.update(kw)
    return await ledger.begin(account=account, **args)  # type: ignore[arg-type]


async def test_two_guards_share_one_ledger_and_one_uid_with_single_flight_per_account(
    clients: Callable[[], Redis], lease: RedisLease
) -> None:
    one, two = await shared(clients), await shared(clients)
    assert one.ledger_uid == two.ledger_uid
    first = await begin(one, lease)
    assert first.reference == f"tg-{one.ledger_uid}-1"
    with pytest.raises(TransferBusyError, match="sub00001"):
        await begin(two, lease)
    assert (await begin(two, lease, "sub00002")).transfer_id == 2
    assert [e.transfer_id for e in await two.unresolved("sub00001")] == [1]
    await one.transition(1, TransferState.UNKNOWN, wall=WALL, epoch=lease.epoch)
    await one.transition(1, TransferState.UNCONFIRMED, wall=WALL, epoch=lease.epoch)
    with pytest.raises(TransferBusyError):
        await begin(two, lease)
    assert (await begin(two, lease, despite_unconfirmed=True)).transfer_id == 3
    assert [e.transfer_id for e in await two.in_doubt("sub00001")] == [1, 3]


async def test_a_deposed_holder_cannot_begin_and_the_new_one_settles_its_leftovers(
    clients: Callable[[], Redis], lease: RedisLease
) -> None:
    ledger = await shared(clients)
    left = await begin(ledger, lease)
    await clients().delete(KEYS.lease)  # pod-0 paused past its lease; pod-1 takes over
    successor = RedisLease(clients(), KEYS, ttl=60.0, holder="pod-1")
    await successor.tick()
    with pytest.raises(FencedError):
        await begin(ledger, lease, "sub00002")
    moved = await ledger.transition(left.transfer_id, TransferState.UNKNOWN, wall=WALL,
                                    epoch=lease.epoch)  # fmt: skip
    assert moved.state is TransferState.UNKNOWN, "the old tenure may record its own outcome"
    done = await ledger.transition(left.transfer_id, TransferState.SUCCEEDED, wall=WALL,
                                   epoch=successor.epoch, vonage_id="v1")  # fmt: skip
    assert (done.state, done.vonage_id) == (TransferState.SUCCEEDED, "v1")
    kept = await ledger.transition(left.transfer_id, TransferState.FAILED, wall=WALL,
                                   epoch=successor.epoch)  # fmt: skip
    assert kept.state is TransferState.SUCCEEDED, "settled stays settled"
    with pytest.raises(FencedError):
        await ledger.transition(left.transfer_id, TransferState.FAILED, wall=WALL, epoch=99)
    await successor.stop()


async def test_reads_by_time_account_and_recency(
    clients: Callable[[], Redis], lease: RedisLease
) -> None:
    ledger = await shared(clients)
    for i, account in enumerate(("a", "b", "a")):
        e = await begin(ledger, lease, account, wall=WALL + i)
        await ledger.transition(e.transfer_id, TransferState.FAILED, wall=WALL, epoch=lease.epoch)
    await begin(ledger, lease, "c", dry_run=True)
    assert [e.transfer_id for e in await ledger.since(WALL + 1)] == [2, 3]
    assert [e.transfer_id for e in await ledger.since(WALL, "a")] == [1, 3]
    assert [e.transfer_id for e in await ledger.latest(2)] == [3, 4]
    assert [e.transfer_id for e in await ledger.latest(1, "a")] == [3]
    assert (await ledger.entry(4)).state is TransferState.DRY_RUN  # type: ignore[union-attr]
    assert await ledger.entry(9) is None


async def test_a_ledger_lost_with_redis_refuses_everything(
    clients: Callable[[], Redis], lease: RedisLease
) -> None:
    ledger = await shared(clients)
    await begin(ledger, lease)
    await clients().flushall()
    await lease.tick()
    with pytest.raises(LedgerError, match="vanished"):
        await ledger.in_doubt()


@pytest.mark.parametrize("kind", POST_KINDS)
async def test_safe_transfer_on_the_shared_ledger_moves_the_money_exactly_once(
    kind: str, fleet_sim: RunningSimulator, vonage: VonageClient, clients: Callable[[], Redis],
    lease: RedisLease,
) -> None:  # fmt: skip
    ledger = await shared(clients)
    safe = SafeTransfer(vonage, ledger, lease, SystemClock(), primary_key=DEMO_API_KEY,
                        verify_after_s=0.2)  # fmt: skip
    await inject_fault(fleet_sim, endpoint="balance-transfers", kind=kind, count=2, delay=2.0)
    await inject_fault(fleet_sim, endpoint="balance-transfers-list", kind="error_500_after")
    await funding_rounds(safe, vonage, SUBS)
    await check_exactly_once(fleet_sim, ledger, SUBS)
