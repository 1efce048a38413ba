"""Many replicas, one spender: real ``topup-guard run`` processes, one simulator, one Redis.

Users run the guard as a sidecar in every pod; with TOPUP_GUARD_REDIS_URL set the replicas share
a lease (with a fencing epoch) and a ledger in Redis, and only the lease holder may spend. These
tests run three real guard processes through a spend burst (2 EUR/s, 10 EUR top-ups, 20 EUR
floor: a top-up every ~5 s) and check the money at the simulator, which is the only truth:

- the top-ups are the ones a single guard would make: each one made only when the balance needed
  it, none doubled, no spend ever refused (``failed_events == 0``), all by one holder at a time;
- ``kill -9`` of the holder: a peer takes the lease within its TTL and tops up in time;
- Redis down: nobody spends (fail safe) and COORDINATION_DOWN is raised; Redis back: one holder,
  top-ups resume.

The takeover bound (test 2). From the holder's death, a peer holds the lease after at most
``TTL`` (2 s: the lease was last renewed no earlier than the kill) plus its retry jitter, and
tops up within one more poll (``POLL_INTERVAL`` 2 s at most, 0.5 s near the trigger) plus the
request: about 4.5 s, in which 2 EUR/s spends 9 EUR. The guard tops up when the balance is due
to cross the 20 EUR floor, so the floor alone covers 10 s: a takeover is in time as long as
``rate x (TTL + POLL_INTERVAL + latency) < floor``. Choose TOPUP_GUARD_MIN_BALANCE by that rule.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest
from redis.asyncio import Redis

from tests.redisproc import RedisServer
from tests.replicas.conftest import TopUpLog
from tests.replicas.harness import (
    AMOUNT,
    FLOOR,
    LEASE_TTL,
    POLL_INTERVAL,
    RATE,
    SAFETY_MARGIN,
    TOPUP_LATENCY,
    GuardProcess,
    Snapshot,
    eventually,
    holder_of,
    lease_value,
    ledger_attempts,
    open_attempts,
    settled,
)
from tests.simctl import sim_control, sim_state
from topup_guard.sim import RunningSimulator

pytestmark = pytest.mark.slow

StartGuards = Callable[[int, RunningSimulator, str], list[GuardProcess]]

# The guard tops up when the balance would cross the floor within its lead time (next poll +
# latency + margin, at most 5 s here), so a needed top-up finds the balance at or below this.
# The second of a double top-up would find it ~10 EUR higher (one top-up's worth).
NEEDED_BELOW = FLOOR + RATE * Decimal(str(POLL_INTERVAL + TOPUP_LATENCY + SAFETY_MARGIN)) + 1
STARTUP = 30.0  # seconds for three Python processes to come up on a loaded 2-core machine


async def _all_up(guards: list[GuardProcess]) -> None:
    async def up() -> bool:
        return all([await g.status() is not None for g in guards])

    await eventually(up, STARTUP, "every guard serves /status")


async def _holder(guards: list[GuardProcess], redis: Redis) -> GuardProcess:
    found: list[GuardProcess] = []

    async def held() -> bool:
        g = holder_of(guards, await lease_value(redis))
        found[:] = [g] if g is not None and g.alive() else []
        return bool(found)

    await eventually(held, 10, "one replica holds the lease")
    return found[0]


def _assert_one_spender_per_epoch(snap: Snapshot) -> None:
    """Each tenure (epoch) has one holder, and tenures follow each other in attempt order."""
    holders: dict[str, str] = {}
    last = 0
    for a in snap.attempts:
        assert int(a["epoch"]) >= 1, a
        assert holders.setdefault(a["epoch"], a["holder"]) == a["holder"], snap.attempts
        assert int(a["begin_epoch"]) >= last, f"an older tenure spent after a newer one: {a}"
        last = int(a["begin_epoch"])


def _assert_each_topup_needed(seen: TopUpLog) -> None:
    for t, balance in seen:
        assert balance <= NEEDED_BELOW, (
            f"top-up at t={t:.1f} s found {balance} EUR: not needed (a double top-up?); {seen}"
        )


async def test_three_replicas_make_the_top_ups_of_one_guard(
    burst_sim: tuple[RunningSimulator, TopUpLog],
    redis_server: RedisServer,
    guards: StartGuards,
    inspect: Callable[[str], Redis],
) -> None:
    sim, seen = burst_sim
    redis = inspect(redis_server.url)
    replicas = guards(3, sim, redis_server.url)
    await _all_up(replicas)
    await _holder(replicas, redis)
    await sim_control(sim, {"spend_rate": str(RATE)})

    async def three_topups() -> bool:
        return len((await sim_state(sim))["topups"]) >= 3

    await eventually(three_topups, 40, "three top-ups during the burst")
    await sim_control(sim, {"spend_rate": "0"})
    snap = await settled(sim, redis)
    for _ in range(50):  # a "200" is SUCCEEDED at once; its credit is recorded at the next poll
        if all(a["credited"] is not None for a in snap.attempts):
            break
        await asyncio.sleep(0.1)
        snap = await settled(sim, redis)

    assert snap.sim["failed_events"] == 0, "the account ran dry"
    assert snap.topups == len(snap.attempts) >= 3
    assert set(snap.states()) == {"succeeded"}, snap.attempts
    assert all(Decimal(a["credited"]) >= AMOUNT / 2 for a in snap.attempts), snap.attempts
    _assert_each_topup_needed(seen)
    _assert_one_spender_per_epoch(snap)
    tenures = {a["epoch"] for a in snap.attempts}
    acquired = sum(g.logs_count("lease_acquired") for g in replicas)
    assert acquired >= len(tenures), "every spending tenure began with a logged acquisition"


async def test_a_peer_takes_over_when_the_holder_is_killed(
    burst_sim: tuple[RunningSimulator, TopUpLog],
    redis_server: RedisServer,
    guards: StartGuards,
    inspect: Callable[[str], Redis],
) -> None:
    sim, seen = burst_sim
    redis = inspect(redis_server.url)
    replicas = guards(3, sim, redis_server.url)
    await _all_up(replicas)
    await _holder(replicas, redis)
    await sim_control(sim, {"spend_rate": str(RATE)})

    async def first_topup_done_and_nearing_the_next() -> bool:
        state = await sim_state(sim)
        near = Decimal(str(state["balance"])) <= NEEDED_BELOW + 1
        return len(state["topups"]) >= 1 and near and await open_attempts(redis) == 0

    await eventually(first_topup_done_and_nearing_the_next, 30, "a top-up, then the next due")
    victim = holder_of(replicas, await lease_value(redis))
    assert victim is not None
    victim.kill9()
    killed_at = time.monotonic()
    topups_at_kill = len(seen)

    successor: list[GuardProcess] = []

    async def taken_over() -> bool:
        g = holder_of(replicas, await lease_value(redis))
        successor[:] = [g] if g is not None and g is not victim else []
        return bool(successor)

    took = await eventually(taken_over, LEASE_TTL + 10, "a peer takes the lease", every=0.05)
    assert took <= LEASE_TTL + 2.0, f"takeover took {took:.2f} s (lease TTL {LEASE_TTL} s)"

    async def topped_up_again() -> bool:
        return len(seen) >= topups_at_kill + 1

    await eventually(topped_up_again, 30, "the successor keeps the account topped up")
    await sim_control(sim, {"spend_rate": "0"})
    snap = await settled(sim, redis)

    assert snap.sim["failed_events"] == 0, (
        f"the account ran dry after the kill (takeover {took:.2f} s, "
        f"{time.monotonic() - killed_at:.1f} s ago)"
    )
    # One to one: every top-up the simulator applied is one SUCCEEDED attempt, and nothing else
    # was recorded except (if the kill hit between PENDING and the POST) an attempt the
    # successor reconciled as UNCONFIRMED because no credit ever showed.
    succeeded = [a for a in snap.attempts if a["state"] == "succeeded"]
    assert snap.topups == len(succeeded), snap.attempts
    assert set(snap.states()) <= {"succeeded", "unconfirmed"}, snap.attempts
    _assert_each_topup_needed(seen)
    _assert_one_spender_per_epoch(snap)
    dead = str(victim.proc.pid)
    after = [a for a in snap.attempts if not a["holder"].endswith(f":{dead}")]
    assert after, "the successor made a top-up"
    assert all(a["holder"].endswith(f":{successor[0].proc.pid}") for a in after), snap.attempts


async def test_redis_down_stops_spending_and_its_return_resumes_it(
    burst_sim: tuple[RunningSimulator, TopUpLog],
    persistent_redis: RedisServer,
    guards: StartGuards,
    inspect: Callable[[str], Redis],
) -> None:
    sim, seen = burst_sim
    redis = inspect(persistent_redis.url)
    replicas = guards(3, sim, persistent_redis.url)
    await _all_up(replicas)
    await _holder(replicas, redis)
    persistent_redis.stop()
    # The burst starts with Redis gone: the first top-up falls due ~3.5 s in, with no lease.
    await sim_control(sim, {"spend_rate": str(RATE)})

    docs: list[dict[str, Any] | None] = []

    async def every_guard_reports_it() -> bool:
        docs[:] = [await g.status() for g in replicas]
        return all(
            d is not None and "coordination_down" in d["conditions"] and d["may_spend"] is False
            for d in docs
        )

    await eventually(
        every_guard_reports_it,
        15,
        "COORDINATION_DOWN and may_spend false on every guard",
        explain=lambda: repr([(d or {}).get("may_spend") for d in docs]),
    )
    # A guard started during the outage must not crash: it waits for Redis like the others.
    late = guards(1, sim, persistent_redis.url)
    await _all_up(late)

    async def below_the_floor() -> bool:
        return Decimal(str((await sim_state(sim))["balance"])) < FLOOR

    await eventually(below_the_floor, 15, "the balance falls below the floor")
    assert seen == [], "a top-up was made without the lease"
    assert all(g.logs_count("coordination_down") >= 1 for g in replicas + late)
    assert all(g.alive() for g in replicas + late)

    persistent_redis.start()

    async def resumed() -> bool:
        return len(seen) >= 1 and await open_attempts(redis) == 0

    await eventually(resumed, 20, "a top-up once Redis is back")
    everyone = replicas + late

    async def recovered() -> bool:
        docs = [await g.status() for g in everyone]
        return all(d is not None and "coordination_down" not in d["conditions"] for d in docs)

    await eventually(recovered, 15, "COORDINATION_DOWN cleared on every guard")
    await sim_control(sim, {"spend_rate": "0"})
    snap = await settled(sim, redis)
    holders = [holder_of(everyone, await lease_value(redis))]
    assert holders[0] is not None, "one holder after the outage"
    assert snap.topups == len(snap.attempts) >= 1
    assert set(snap.states()) == {"succeeded"}, snap.attempts
    assert snap.sim["failed_events"] == 0, "the account ran dry during the outage"
    _assert_one_spender_per_epoch(snap)
    assert all(g.logs_count("coordination_recovered") >= 1 for g in everyone)
    assert len(await ledger_attempts(redis)) == len(snap.attempts)
