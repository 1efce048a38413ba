"""The spending lease against a real redis-server: one holder, takeover, fencing epochs, outages."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable

import pytest
from redis.asyncio import Redis

from tests.coordination.conftest import RedisServer, eventually
from topup_guard.clock import VirtualClock
from topup_guard.ledger.redis_lease import RedisKeys, RedisLease

TTL = 1.0  # seconds; renewals every third of it


@pytest.fixture
async def make_lease(
    redis_clients: Callable[[], Redis], keys: RedisKeys
) -> AsyncIterator[Callable[..., RedisLease]]:
    """Builds replicas (each with its own client, like separate pods); stops them all after."""
    made: list[RedisLease] = []

    def make(name: str, ttl: float = TTL, **kw: object) -> RedisLease:
        lease = RedisLease(redis_clients(), keys, ttl=ttl, holder=name, **kw)  # type: ignore[arg-type]
        made.append(lease)
        return lease

    yield make
    for lease in made:
        await lease.stop()


def spenders(leases: list[RedisLease]) -> list[str]:
    return [lease.holder for lease in leases if lease.may_spend()]


async def test_exactly_one_of_three_replicas_may_spend(make_lease: Callable[..., RedisLease]):
    leases = [make_lease(f"pod-{i}") for i in range(3)]
    for lease in leases:
        await lease.start()

    assert spenders(leases) == ["pod-0"]
    assert all(lease.healthy for lease in leases)
    assert [lease.epoch for lease in leases] == [1, 0, 0]
    # Renewals keep it that way well past the lease time.
    deadline = time.monotonic() + 2.5 * TTL
    while time.monotonic() < deadline:
        assert len(spenders(leases)) <= 1
        await asyncio.sleep(0.05)
    assert spenders(leases) == ["pod-0"]


async def test_a_watcher_takes_over_within_the_lease_time_when_the_holder_dies(
    make_lease: Callable[..., RedisLease],
):
    holder, *watchers = [make_lease(f"pod-{i}") for i in range(3)]
    for lease in (holder, *watchers):
        await lease.start()

    await holder.stop(release=False)  # a crash: no release, the lease must expire
    died = time.monotonic()
    assert not holder.may_spend()
    await eventually(lambda: len(spenders(watchers)) == 1, within=TTL + 0.5)

    assert time.monotonic() - died <= TTL + 0.5
    (new,) = [w for w in watchers if w.may_spend()]
    assert new.epoch == 2


async def test_a_clean_stop_releases_the_lease_for_a_quick_handover(
    make_lease: Callable[..., RedisLease],
):
    holder, watcher = make_lease("pod-0", ttl=3.0), make_lease("pod-1", ttl=3.0)
    await holder.start()
    await watcher.start()

    await holder.stop()
    stopped = time.monotonic()
    await eventually(watcher.may_spend, within=2.0)

    assert time.monotonic() - stopped < 1.5  # a watcher looks every ttl/3, not after expiry


async def test_every_acquisition_increments_the_epoch(
    make_lease: Callable[..., RedisLease], redis_clients: Callable[[], Redis], keys: RedisKeys
):
    epochs = []
    for i in range(3):
        lease = make_lease(f"pod-{i}")
        await lease.tick()
        assert lease.may_spend()
        epochs.append(lease.epoch)
        await lease.stop()

    assert epochs == [1, 2, 3]
    assert await redis_clients().get(keys.epoch) == "3"


async def test_stops_spending_once_the_last_renewal_is_stale(
    make_lease: Callable[..., RedisLease],
):
    clock = VirtualClock()
    lease = make_lease("pod-0", ttl=15.0, clock=clock)  # margin is ttl/3: spend for 10 s
    await lease.tick()
    assert lease.may_spend()

    clock.advance(9.9)
    assert lease.may_spend()
    clock.advance(0.2)
    assert not lease.may_spend()
    assert lease.is_holder  # it still holds the lease in Redis, but cannot prove it freshly

    await lease.tick()  # a renewal restores it
    assert lease.may_spend()


async def test_a_holder_whose_lease_was_taken_stops_spending_and_says_so(
    make_lease: Callable[..., RedisLease],
    redis_clients: Callable[[], Redis],
    keys: RedisKeys,
    caplog: pytest.LogCaptureFixture,
):
    caplog.set_level(logging.INFO, logger="topup_guard.coordination")
    old, new = make_lease("pod-0"), make_lease("pod-1")
    await old.tick()
    await redis_clients().delete(keys.lease)  # as if it expired while pod-0 was paused
    await new.tick()

    await old.tick()

    assert not old.may_spend()
    assert not old.is_holder
    assert new.may_spend()
    assert new.epoch == 2
    assert "lease_lost" in caplog.messages


async def test_stopping_a_deposed_holder_does_not_delete_the_successors_lease(
    make_lease: Callable[..., RedisLease], redis_clients: Callable[[], Redis], keys: RedisKeys
):
    old, new = make_lease("pod-0"), make_lease("pod-1")
    await old.tick()
    await redis_clients().delete(keys.lease)
    await new.tick()

    await old.stop()  # still believes it holds: compare-and-delete must spare pod-1's lease

    value = await redis_clients().get(keys.lease)
    assert value is not None
    assert value.startswith("2|pod-1|")
    await new.tick()
    assert new.may_spend()


async def test_nobody_spends_while_redis_is_down_and_one_holder_returns_after(
    make_lease: Callable[..., RedisLease],
    redis_server: RedisServer,
    caplog: pytest.LogCaptureFixture,
):
    caplog.set_level(logging.INFO, logger="topup_guard.coordination")
    leases = [make_lease(f"pod-{i}") for i in range(3)]
    for lease in leases:
        await lease.start()
    assert len(spenders(leases)) == 1

    redis_server.stop()
    await eventually(lambda: not any(lease.healthy for lease in leases), within=3 * TTL)
    assert spenders(leases) == []
    assert "coordination_down" in caplog.messages

    redis_server.start()  # an empty Redis: the lease and the epoch counter are gone
    await eventually(
        lambda: all(lease.healthy for lease in leases) and len(spenders(leases)) == 1,
        within=3 * TTL,
    )
    assert "coordination_recovered" in caplog.messages


async def test_a_replica_started_while_redis_is_down_is_unhealthy_and_never_spends(
    make_lease: Callable[..., RedisLease], redis_server: RedisServer
):
    redis_server.stop()
    lease = make_lease("pod-0")

    await lease.start()  # does not raise: it keeps trying in the background

    assert not lease.healthy
    assert not lease.may_spend()
    redis_server.start()
    await eventually(lease.may_spend, within=3 * TTL)
