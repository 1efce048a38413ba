"""The shared Redis ledger: SqliteLedger's behaviour, plus fencing across replicas."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from decimal import Decimal

import pytest
from redis.asyncio import Redis
from redis.exceptions import RedisError

from tests.coordination.conftest import ACCOUNT, RedisServer
from topup_guard.config import Settings
from topup_guard.errors import LedgerError
from topup_guard.ledger.base import Attempt, AttemptState, FencedError, LedgerBusyError
from topup_guard.ledger.redis import RedisLedger, build_redis_coordination
from topup_guard.ledger.redis_lease import RedisKeys, RedisLease

WALL = 1_800_000_000.25


@pytest.fixture
async def lease(redis_clients: Callable[[], Redis], keys: RedisKeys) -> AsyncIterator[RedisLease]:
    """pod-0 holding the lease (epoch 1); no background loop, the TTL outlasts the test."""
    held = RedisLease(redis_clients(), keys, ttl=60.0, holder="pod-0")
    await held.tick()
    assert held.may_spend()
    yield held
    await held.stop()


@pytest.fixture
def ledger(redis_clients: Callable[[], Redis], keys: RedisKeys) -> RedisLedger:
    return RedisLedger(redis_clients(), keys)


async def begin(
    ledger: RedisLedger, lease: RedisLease, wall: float = WALL, **kw: object
) -> Attempt:
    args: dict[str, object] = {
        "balance_before": Decimal("12.5"),
        "expected_amount": Decimal("50"),
        "reason": "forecast exhaustion in 4 min",
        "wall": wall,
        "epoch": lease.epoch,
        "holder": lease.holder,
    }
    args.update(kw)
    return await ledger.begin(**args)  # type: ignore[arg-type]


async def depose(redis_clients: Callable[[], Redis], name: str) -> RedisLease:
    """The lease expires while its holder is paused, and ``name`` takes over."""
    keys = RedisKeys(ACCOUNT)
    await redis_clients().delete(keys.lease)
    successor = RedisLease(redis_clients(), keys, ttl=60.0, holder=name)
    await successor.tick()
    assert successor.may_spend()
    return successor


async def test_begin_records_a_pending_attempt_with_the_next_id(
    ledger: RedisLedger, lease: RedisLease
):
    first = await begin(ledger, lease)

    assert first.attempt_id == 1
    assert first.state is AttemptState.PENDING
    assert (first.epoch, first.holder) == (1, "pod-0")
    assert first.created_wall == first.updated_wall == WALL
    assert first.balance_before == Decimal("12.5")
    assert first.expected_amount == Decimal("50")
    assert (first.credited, first.evidence, first.detail) == (None, None, "")
    assert first.reason == "forecast exhaustion in 4 min"


@pytest.mark.parametrize("state", [AttemptState.PENDING, AttemptState.UNKNOWN])
async def test_no_new_attempt_while_one_is_unresolved(
    ledger: RedisLedger, lease: RedisLease, state: AttemptState
):
    first = await begin(ledger, lease)
    if state is not AttemptState.PENDING:
        await ledger.transition(first.attempt_id, state, wall=WALL + 1, epoch=lease.epoch)

    with pytest.raises(LedgerBusyError, match=f"attempt 1 is still {state.value}"):
        await begin(ledger, lease, wall=WALL + 2)

    await ledger.transition(1, AttemptState.SUCCEEDED, wall=WALL + 3, epoch=lease.epoch)
    assert (await begin(ledger, lease, wall=WALL + 4)).attempt_id == 2


async def test_dry_runs_are_recorded_but_never_block(ledger: RedisLedger, lease: RedisLease):
    await begin(ledger, lease)

    dry = await begin(ledger, lease, dry_run=True)

    assert dry.state is AttemptState.DRY_RUN
    assert [a.attempt_id for a in await ledger.unresolved()] == [1]


async def test_a_transition_appends_and_the_latest_event_is_the_state(
    ledger: RedisLedger, lease: RedisLease, redis_clients: Callable[[], Redis], keys: RedisKeys
):
    await begin(ledger, lease)
    await ledger.transition(1, AttemptState.UNKNOWN, wall=WALL + 1, epoch=1, detail="timeout")

    done = await ledger.transition(
        1, AttemptState.SUCCEEDED, wall=WALL + 9, epoch=1,
        credited=Decimal("50.0000"), evidence="balance step +50.0000 EUR",
    )  # fmt: skip

    assert done.state is AttemptState.SUCCEEDED
    assert (done.created_wall, done.updated_wall) == (WALL, WALL + 9)
    assert done.credited == Decimal("50.0000")
    assert done.evidence == "balance step +50.0000 EUR"
    assert done.detail == ""
    assert done.holder == "pod-0"
    assert done.balance_before == Decimal("12.5")
    assert await ledger.unresolved() == []
    assert await redis_clients().xlen(keys.events) == 3  # append-only: every event kept


async def test_decimals_and_wall_times_round_trip_exactly(ledger: RedisLedger, lease: RedisLease):
    wall = 1_800_000_123.123456
    await begin(
        ledger, lease, wall=wall,
        balance_before=Decimal("9.87654321012345678901"), expected_amount=Decimal("50.00"),
    )  # fmt: skip
    await ledger.transition(1, AttemptState.SUCCEEDED, wall=wall, epoch=1, credited=Decimal("1E+1"))

    (got,) = await ledger.latest(1)

    assert str(got.balance_before) == "9.87654321012345678901"
    assert str(got.expected_amount) == "50.00"
    assert str(got.credited) == "1E+1"
    assert got.created_wall == wall


async def test_an_unknown_amount_is_kept_as_none(ledger: RedisLedger, lease: RedisLease):
    attempt = await begin(ledger, lease, expected_amount=None)
    assert attempt.expected_amount is None
    assert attempt.amount_for_caps is None


async def test_since_latest_and_unresolved_list_attempts_in_order(
    ledger: RedisLedger, lease: RedisLease
):
    for i in range(4):
        await begin(ledger, lease, wall=WALL + 100 * i)
        if i < 3:
            await ledger.transition(i + 1, AttemptState.FAILED, wall=WALL + 100 * i, epoch=1)

    assert [a.attempt_id for a in await ledger.since(WALL + 100)] == [2, 3, 4]  # inclusive
    assert [a.attempt_id for a in await ledger.since(WALL + 100.5)] == [3, 4]
    assert [a.attempt_id for a in await ledger.latest(2)] == [3, 4]
    assert [a.attempt_id for a in await ledger.latest(10)] == [1, 2, 3, 4]
    assert await ledger.latest(0) == []
    assert [(a.attempt_id, a.state) for a in await ledger.unresolved()] == [
        (4, AttemptState.PENDING)
    ]


async def test_a_transition_of_an_unknown_attempt_is_an_error(
    ledger: RedisLedger, lease: RedisLease
):
    with pytest.raises(LedgerError, match="no attempt 7"):
        await ledger.transition(7, AttemptState.FAILED, wall=WALL, epoch=lease.epoch)


async def test_caps_count_every_replicas_attempts(
    redis_clients: Callable[[], Redis], keys: RedisKeys, lease: RedisLease
):
    pod0, pod1 = RedisLedger(redis_clients(), keys), RedisLedger(redis_clients(), keys)
    await begin(pod0, lease)
    await pod0.transition(1, AttemptState.SUCCEEDED, wall=WALL, epoch=1)

    assert [a.state for a in await pod1.since(WALL - 3600)] == [AttemptState.SUCCEEDED]
    await begin(pod0, lease)
    with pytest.raises(LedgerBusyError):  # pending entries are visible to every replica
        await begin(pod1, lease)


# --- fencing ----------------------------------------------------------------------------------


async def test_a_stale_epoch_may_not_begin_and_nothing_is_written(
    ledger: RedisLedger,
    lease: RedisLease,
    redis_clients: Callable[[], Redis],
    keys: RedisKeys,
):
    successor = await depose(redis_clients, "pod-1")

    with pytest.raises(FencedError, match="current epoch 2"):
        await begin(ledger, lease)  # pod-0 still believes in epoch 1

    assert await ledger.latest(10) == []
    assert await redis_clients().xlen(keys.events) == 0
    assert await redis_clients().get(keys.seq) is None
    assert (await begin(ledger, successor)).epoch == 2


async def test_an_expired_lease_may_not_begin_even_if_nobody_took_over(
    ledger: RedisLedger, lease: RedisLease, redis_clients: Callable[[], Redis], keys: RedisKeys
):
    await redis_clients().delete(keys.lease)

    with pytest.raises(FencedError):
        await begin(ledger, lease)


async def test_a_reused_epoch_number_on_another_host_is_still_fenced(
    ledger: RedisLedger, lease: RedisLease, redis_clients: Callable[[], Redis]
):
    """Redis restarted empty and pod-1 got epoch 1 again: pod-0's epoch 1 is not pod-1's."""
    await redis_clients().delete(RedisKeys(ACCOUNT).epoch)
    successor = await depose(redis_clients, "pod-1")
    assert successor.epoch == lease.epoch == 1

    with pytest.raises(FencedError):
        await begin(ledger, lease)


async def test_a_deposed_holder_still_records_the_outcome_of_its_own_attempt(
    ledger: RedisLedger, lease: RedisLease, redis_clients: Callable[[], Redis]
):
    await begin(ledger, lease)
    await depose(redis_clients, "pod-1")

    done = await ledger.transition(1, AttemptState.SUCCEEDED, wall=WALL + 5, epoch=1)

    assert done.state is AttemptState.SUCCEEDED
    assert done.epoch == 1


async def test_only_the_attempts_own_or_the_current_epoch_may_transition_it(
    ledger: RedisLedger, lease: RedisLease, redis_clients: Callable[[], Redis]
):
    await begin(ledger, lease)  # epoch 1
    second = await depose(redis_clients, "pod-1")
    await ledger.transition(1, AttemptState.UNKNOWN, wall=WALL + 1, epoch=second.epoch)
    third = await depose(redis_clients, "pod-2")

    with pytest.raises(FencedError, match="current epoch 3"):
        await ledger.transition(1, AttemptState.UNCONFIRMED, wall=WALL + 2, epoch=second.epoch)
    assert (await ledger.latest(1))[0].state is AttemptState.UNKNOWN

    done = await ledger.transition(1, AttemptState.UNCONFIRMED, wall=WALL + 3, epoch=third.epoch)
    assert (done.state, done.epoch) == (AttemptState.UNCONFIRMED, 3)


async def test_a_resolved_attempt_is_not_downgraded_by_a_late_racer(
    ledger: RedisLedger, lease: RedisLease, redis_clients: Callable[[], Redis], keys: RedisKeys
):
    await begin(ledger, lease)
    await ledger.transition(1, AttemptState.SUCCEEDED, wall=WALL + 1, epoch=1, evidence="api")

    kept = await ledger.transition(1, AttemptState.UNCONFIRMED, wall=WALL + 60, epoch=1)

    assert kept.state is AttemptState.SUCCEEDED
    assert kept.evidence == "api"
    assert await redis_clients().xlen(keys.events) == 3  # the racer's event is kept for audit


async def test_a_credit_seen_late_upgrades_an_unconfirmed_attempt(
    ledger: RedisLedger, lease: RedisLease
):
    await begin(ledger, lease)
    await ledger.transition(1, AttemptState.UNCONFIRMED, wall=WALL + 60, epoch=1)

    done = await ledger.transition(1, AttemptState.SUCCEEDED, wall=WALL + 61, epoch=1)

    assert done.state is AttemptState.SUCCEEDED


async def test_of_concurrent_begins_exactly_one_wins(
    redis_clients: Callable[[], Redis], keys: RedisKeys, lease: RedisLease
):
    ledgers = [RedisLedger(redis_clients(), keys) for _ in range(8)]

    results = await asyncio.gather(*(begin(x, lease) for x in ledgers), return_exceptions=True)

    won = [r for r in results if isinstance(r, Attempt)]
    assert len(won) == 1
    assert all(isinstance(r, LedgerBusyError) for r in results if r not in won)
    assert [a.attempt_id for a in await ledgers[0].latest(10)] == [1]


async def test_guards_of_different_accounts_do_not_block_each_other(
    redis_clients: Callable[[], Redis], ledger: RedisLedger, lease: RedisLease
):
    other_keys = RedisKeys("efgh5678")
    other_lease = RedisLease(redis_clients(), other_keys, ttl=60.0, holder="pod-0")
    await other_lease.tick()
    other = RedisLedger(redis_clients(), other_keys)
    await begin(ledger, lease)

    attempt = await begin(other, other_lease)

    assert (attempt.attempt_id, attempt.epoch) == (1, 1)
    assert await other.since(0) == [attempt]
    await other_lease.stop()


# --- failures -----------------------------------------------------------------------------------


async def test_redis_down_is_a_ledger_error_not_a_redis_exception(
    ledger: RedisLedger, lease: RedisLease, redis_server: RedisServer
):
    await ledger.latest(1)
    redis_server.stop()

    for call in (begin(ledger, lease), ledger.unresolved(), ledger.since(0), ledger.latest(5),
                 ledger.transition(1, AttemptState.FAILED, wall=WALL, epoch=1)):  # fmt: skip
        with pytest.raises(LedgerError, match="cannot be used") as caught:
            await call
        assert not isinstance(caught.value, RedisError)
        assert caught.value.__cause__ is None


async def test_a_ledger_that_vanished_from_redis_refuses_everything(
    ledger: RedisLedger, lease: RedisLease, redis_clients: Callable[[], Redis]
):
    await begin(ledger, lease)
    await redis_clients().flushall()  # a restart without persistence: the pending entry is gone
    await lease.tick()

    with pytest.raises(LedgerError, match="vanished"):
        await ledger.unresolved()
    with pytest.raises(LedgerError, match="vanished"):
        await begin(ledger, lease)


async def test_build_redis_coordination_shares_one_account_scoped_store(
    redis_server: RedisServer, redis_clients: Callable[[], Redis]
):
    settings = Settings(api_key=ACCOUNT, redis_url=redis_server.url, lease_ttl=2.0)
    coordinator, ledger = build_redis_coordination(settings)
    await coordinator.start()
    try:
        assert coordinator.may_spend()
        attempt = await ledger.begin(
            balance_before=Decimal("5"), expected_amount=None, reason="test", wall=WALL,
            epoch=coordinator.epoch, holder=coordinator.holder,
        )  # fmt: skip
        assert attempt.attempt_id == 1
        assert await redis_clients().exists(f"topup-guard:{{{ACCOUNT}}}:lease") == 1
    finally:
        await coordinator.stop()
        await ledger.close()
    assert await redis_clients().exists(f"topup-guard:{{{ACCOUNT}}}:lease") == 0


async def test_a_guard_started_after_the_loss_does_not_rearm_the_others(
    ledger: RedisLedger, lease: RedisLease, redis_clients: Callable[[], Redis], keys: RedisKeys
):
    await begin(ledger, lease)
    await redis_clients().flushall()
    newcomer = RedisLedger(redis_clients(), keys)  # a pod started after the data loss

    assert await newcomer.unresolved() == []  # it cannot know: for it the ledger starts anew
    with pytest.raises(LedgerError, match="vanished"):
        await ledger.unresolved()  # the guard that knew the lost attempt still refuses
