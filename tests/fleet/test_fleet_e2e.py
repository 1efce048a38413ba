"""Issue 13's acceptance over real HTTP: real `topup-guard run` processes in fleet mode against
the simulator — a primary and 50 own-balance subaccounts (bursty, steady, idle) with faults on
transfers, the transfer listing, the subaccounts list and top-ups; then two replicas sharing a
real redis-server, the leader killed in the middle of a transfer."""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import DEMO_CREDENTIALS
from tests.redisproc import RedisServer
from tests.run.guardproc import GuardProcess, free_port, get, guard_env
from tests.simctl import inject_fault, sim_post, sim_state
from topup_guard.config import DEMO_API_KEY
from topup_guard.fleet.transfer_base import TransferEntry, TransferState
from topup_guard.fleet.transfer_redis import RedisTransferLedger
from topup_guard.fleet.transfer_view import read_transfer_timelines
from topup_guard.ledger.redis import redis_client
from topup_guard.ledger.redis_lease import RedisKeys
from topup_guard.sim import RunningSimulator, Scenario, start_simulator

pytestmark = pytest.mark.slow

TOPUP = Decimal("50")  # what one top-up of the primary buys
PRIMARY_FLOOR = Decimal("10")
SUB_FLOOR = Decimal("8")
TRANSFER = Decimal("10")
BURSTY = [f"burst{i:03d}" for i in range(10)]
STEADY = [f"steady{i:02d}" for i in range(20)]
IDLE = [f"idle{i:04d}" for i in range(20)]
OWN = BURSTY + STEADY + IDLE
IDLE_LOW = IDLE[:2]  # idle, but below their floor from the start: funded in the first cycles
ON_CREDIT = STEADY[-2:]  # a credit facility: spendable = balance - credit_limit
SHARED = ["shared01", "shared02"]
SUSPENDED = "susp0001"
EXCLUDED = "excl0001"
SHARES = "shares the primary account's balance"
RUN_S = 36.0  # seconds of spend the single guard is watched for
GRACE_S = 5.0  # refusals before this (after the guard is up) are the start-up's, not the fleet's
SETTLED_WITHIN = 15.0  # seconds for every transfer in doubt to be settled after the run

FLEET_FILE = f"""
[fleet]
max_transfers_per_hour = 600
max_daily_amount = 5000

[defaults]
floor = {SUB_FLOOR}
transfer_amount = {TRANSFER}
max_transfers_per_hour = 60
max_daily_amount = 1000

[[account]]
name = "test-*"
exclude = true
"""


def _scenario(opening: Decimal, subs: list[dict[str, Any]]) -> Scenario:
    return Scenario.from_dict({
        "initial_balance": str(opening),
        "topup_amount": str(TOPUP),
        # Vonage's auto-reload stays on (a top-up needs it) but never fires: the balance is never
        # below 0, and its first check comes after 300 s. Every top-up is the guard's.
        "autoreload_threshold": "0",
        "topup_latency_s": 0,
        "balance_latency_s": 0,
        "subaccounts": subs,
    })  # fmt: skip


def _bursty(key: str, i: int, balance: str = "12") -> dict[str, Any]:
    """Nothing, then a campaign: 0.6 EUR/s for 5 s every 15 s (3 EUR), staggered per account
    (independent customers do not all send at once)."""
    burst = {"at": 3 + i, "duration": 5, "rate": "0.6"}
    return {"api_key": key, "name": f"Bursty {i}", "balance": balance, "bursts": [burst],
            "repeat_every": 15}  # fmt: skip


def _steady(key: str, i: int, rate: str = "0.1", balance: str = "11") -> dict[str, Any]:
    return {"api_key": key, "name": f"Steady {i}", "balance": balance, "spend_rate": rate}


def _fifty() -> list[dict[str, Any]]:
    """The issue's fleet: 10 bursty, 20 steady (0.1 EUR/s; two of them on a credit facility),
    20 idle (two below their floor); two that spend the primary's balance (0.05 EUR/s each), one
    suspended, one excluded by the fleet file's name pattern."""
    subs = [_bursty(key, i) for i, key in enumerate(BURSTY)]
    subs += [_steady(key, i) for i, key in enumerate(STEADY)]
    for sub in subs:
        if sub["api_key"] in ON_CREDIT:
            sub.update(balance="1", credit_limit="-10")
    subs += [{"api_key": key, "name": f"Idle {i}", "balance": "3" if key in IDLE_LOW else "20"}
             for i, key in enumerate(IDLE)]  # fmt: skip
    subs += [{"api_key": key, "name": f"Shared {key}", "spend_rate": "0.05"} for key in SHARED]
    subs.append({"api_key": SUSPENDED, "name": "Suspended", "balance": "3", "suspended": True})
    subs.append({"api_key": EXCLUDED, "name": "test-sandbox", "balance": "1"})
    return subs


@pytest.fixture
async def start_sim() -> AsyncIterator[Callable[[Scenario], Awaitable[RunningSimulator]]]:
    """``await start_sim(scenario)``: the simulator in this loop, stopped after the test."""
    started: list[RunningSimulator] = []

    async def start(scenario: Scenario) -> RunningSimulator:
        sim = await start_simulator("127.0.0.1", 0, scenario=scenario,
                                    credentials=DEMO_CREDENTIALS)  # fmt: skip
        started.append(sim)
        return sim

    yield start
    for sim in started:
        await sim.stop()


def _fleet_env(sim: RunningSimulator, tmp_path: Path, name: str, **extra: str) -> dict[str, str]:
    fleet_file = tmp_path / "fleet.toml"
    fleet_file.write_text(FLEET_FILE)
    return guard_env(
        sim,
        tmp_path / f"{name}.db",
        health_port=free_port(),
        TOPUP_GUARD_FLEET_FILE=str(fleet_file),
        TOPUP_GUARD_TOPUP_AMOUNT=str(TOPUP),
        TOPUP_GUARD_MIN_BALANCE=str(PRIMARY_FLOOR),
        TOPUP_GUARD_TOPUP_LATENCY="1",
        TOPUP_GUARD_SAFETY_MARGIN="2",
        TOPUP_GUARD_HTTP_TIMEOUT="3",
        TOPUP_GUARD_MAX_TOPUPS_PER_HOUR="100",
        TOPUP_GUARD_MAX_TOPUPS_PER_DAY="100",
        TOPUP_GUARD_MAX_DAILY_AMOUNT="100000",
        **extra,
    )


async def _status(env: dict[str, str]) -> dict[str, Any]:
    code, body = await get(f"http://127.0.0.1:{env['TOPUP_GUARD_HEALTH_PORT']}/status")
    assert code == 200, body
    data: dict[str, Any] = json.loads(body)
    return data


def _refused(state: dict[str, Any], keys: list[str]) -> dict[str, Decimal]:
    return {k: Decimal(str(state["subaccounts"][k]["refused_spend"])) for k in keys}


def _calls(state: dict[str, Any], endpoint: str) -> int:
    return sum(state["calls"].get(endpoint, {}).values())


def _books_agree(sim: RunningSimulator, entries: list[TransferEntry]) -> str:
    """Empty when every transfer the simulator applied has exactly one SUCCEEDED ledger entry with
    its reference and vice versa, and nothing is in doubt; else what differs."""
    applied = Counter(tr.reference for tr in sim.account.transfers)
    twice = {ref: n for ref, n in applied.items() if n > 1}
    if twice or None in applied:
        return f"applied twice or without a reference: {twice or applied[None]}"
    succeeded = Counter(e.reference for e in entries if e.state is TransferState.SUCCEEDED)
    if set(applied) != set(succeeded) or any(n > 1 for n in succeeded.values()):
        return f"applied but not SUCCEEDED, or the reverse: {set(applied) ^ set(succeeded)}"
    unsettled = [e for e in entries if e.state not in (TransferState.SUCCEEDED,
                                                       TransferState.FAILED)]  # fmt: skip
    return f"not settled: {unsettled}" if unsettled else ""


async def _until_books_agree(
    sim: RunningSimulator, read: Callable[[], Awaitable[list[TransferEntry]]]
) -> list[TransferEntry]:
    deadline = time.monotonic() + SETTLED_WITHIN
    while True:
        entries = await read()
        why = _books_agree(sim, entries)
        if not why:
            return entries
        assert time.monotonic() < deadline, why
        await asyncio.sleep(0.2)


async def _faults_over_time(sim: RunningSimulator, started: float) -> None:
    """Each fault once, spread over the run: 500 after (applied), timeout (applied), reset
    (applied) and 500 before (not applied) on the transfer POST, the listing that settles the
    first one failing once, the subaccounts list failing once, and the primary's top-up
    answered 500 after it was applied."""
    plan: list[tuple[float, dict[str, object]]] = [
        (1, {"endpoint": "top-up", "kind": "error_500_after"}),
        (6, {"endpoint": "balance-transfers-post", "kind": "error_500_after"}),
        (6, {"endpoint": "balance-transfers-list", "kind": "error_500_before"}),
        (10, {"endpoint": "subaccounts", "kind": "error_500_before"}),
        (13, {"endpoint": "balance-transfers-post", "kind": "timeout_after", "delay": 5}),
        (19, {"endpoint": "balance-transfers-post", "kind": "reset_after"}),
        (25, {"endpoint": "balance-transfers-post", "kind": "error_500_before"}),
    ]
    for at, fault in plan:
        await asyncio.sleep(max(0.0, started + at - time.monotonic()))
        await inject_fault(sim, **fault)


async def test_a_primary_funds_fifty_subaccounts_through_faults_without_a_refusal(
    start_sim: Callable[[Scenario], Awaitable[RunningSimulator]], tmp_path: Path
) -> None:
    """No own-balance subaccount's demand is refused where the primary could pay. "Could pay"
    here is always: the guard may top the primary up (caps far above the run's needs, every
    top-up is credited at once), so the primary always holds a transfer above its floor but in
    the first cycles, when it starts with 60 EUR against the 400+ EUR the fleet wants at once
    (the grace of GRACE_S covers those).

    "Needed" top-ups: money moved out of the primary (transfers out plus the shared subaccounts'
    spend) beyond its opening balance, divided by the top-up amount, rounded up; one more is
    allowed (so the primary ends with less than two top-ups' worth)."""
    opening = Decimal("60")
    sim = await start_sim(_scenario(opening, _fifty()))
    env = _fleet_env(sim, tmp_path, "ledger")
    guard = await GuardProcess.start(env)
    try:
        await guard.event("guard_started", timeout=20)
        started = time.monotonic()
        sim_started = float((await sim_state(sim))["t"])
        faults = asyncio.create_task(_faults_over_time(sim, started))
        await asyncio.sleep(GRACE_S)
        refused_at_grace = _refused(await sim_state(sim), OWN)
        await asyncio.sleep(max(0.0, started + RUN_S - time.monotonic()))
        await faults
        for key in STEADY:  # the run is over: stop the spend, let the guard settle
            await sim_post(sim, f"/_sim/subaccounts/{key}", {"spend_rate": "0"})

        async def read() -> list[TransferEntry]:
            timelines, _ = read_transfer_timelines(tmp_path / "ledger.db")
            return [t.entry for t in timelines]

        entries = await _until_books_agree(sim, read)
        before = await _status(env)
        state = await sim_state(sim)
        after = await _status(env)
    finally:
        code, _ = await guard.terminate(timeout=15)
    assert code == 0, guard.output
    assert state["faults"] == [], "every injected fault was hit"

    # No demand refused once the guard was up.
    refused = _refused(state, OWN)
    late = {k: refused[k] - refused_at_grace[k] for k in OWN if refused[k] > refused_at_grace[k]}
    assert late == {}, f"refused after the first {GRACE_S} s: {late}"

    # Transfers applied = transfers in the ledger (_until_books_agree), and the 500-before one
    # proved not applied by the listing.
    applied = sim.account.transfers
    states = Counter(e.state.value for e in entries)
    assert states["failed"] >= 1, states
    assert all(tr.from_key == DEMO_API_KEY for tr in applied)
    funded = {tr.to_key for tr in applied}
    assert funded.isdisjoint({SUSPENDED, EXCLUDED, *SHARED, *IDLE[2:]}), funded
    assert set(BURSTY) | set(STEADY) | set(IDLE_LOW) <= funded
    for key in IDLE_LOW:  # idle is no reason to wait: its floor is kept from the start
        first = min(tr.t for tr in applied if tr.to_key == key)
        assert first - sim_started <= GRACE_S, (key, first - sim_started)
        assert Decimal(str(state["subaccounts"][key]["balance"])) >= SUB_FLOOR

    # The primary charged no more often than its outflow needed, plus one.
    moved = sum((tr.amount for tr in applied), Decimal(0))
    shared = sum((Decimal(str(state["subaccounts"][k]["served_spend"])) for k in SHARED),
                 Decimal(0))  # fmt: skip
    needed = max(0, math.ceil((moved + shared - opening) / TOPUP))
    topups = len(state["topups"])
    assert topups >= 2, "the top-up fault was hit by a real top-up, and the run went on"
    assert topups <= needed + 1, (topups, needed, moved, shared)

    # One list call per cycle (one more: the failed one's retry); the primary never read alone.
    list_calls = _calls(state, "subaccounts")
    cycles = before["fleet"]["list_calls"], after["fleet"]["list_calls"]
    assert cycles[0] <= list_calls <= cycles[1] + 1, (list_calls, cycles)
    assert _calls(state, "get-balance") == 0, state["calls"]

    # Reported: every own-balance account and the suspended one; shared and excluded skipped.
    fleet = after["fleet"]
    listed = {row["account"]: row for row in fleet["accounts"]}
    assert set(listed) == {*OWN, SUSPENDED}, sorted(listed)
    assert listed[SUSPENDED]["suspended"] is True
    assert "subaccount_suspended" in after["conditions"], after["conditions"]
    skipped = {row["account"]: row["why"] for row in fleet["skipped"]}
    assert skipped == {SHARED[0]: SHARES, SHARED[1]: SHARES,
                       EXCLUDED: "excluded by the fleet file"}  # fmt: skip
    print(  # the figures (pytest -s)
        f"\nrefused after grace: {sum(late.values(), Decimal(0))} EUR (before: "
        f"{sum(refused_at_grace.values(), Decimal(0))}); transfers applied {len(applied)}, "
        f"ledger {dict(states)}; top-ups {topups} <= needed {needed} + 1 (moved {moved}, shared "
        f"spend {shared}, primary ends at {state['balance']}); list calls {list_calls} vs "
        f"cycles {cycles}"
    )


# --- two replicas, one Redis -----------------------------------------------------------------
LEASE_TTL = 2.0
REPLICA_STEADY = [f"rsteady{i}" for i in range(6)]
REPLICA_BURSTY = [f"rburst{i:02d}" for i in range(2)]


def _holder_of(lease: bytes | str | None, guards: list[GuardProcess]) -> GuardProcess | None:
    """The replica whose ``<host>:<pid>`` is the lease's holder."""
    if lease is None:
        return None
    text = lease.decode() if isinstance(lease, bytes) else lease
    holder = text.split("|")[1]
    return next((g for g in guards if holder.endswith(f":{g.proc.pid}")), None)


async def test_two_replicas_one_moves_money_and_the_survivor_settles_the_killed_leaders_transfer(
    start_sim: Callable[[Scenario], Awaitable[RunningSimulator]],
    redis_server: RedisServer,
    tmp_path: Path,
) -> None:
    """Two fleet replicas on one Redis: only the lease holder transfers. The leader is SIGKILLed
    while a transfer's POST hangs (applied at Vonage, no answer): the survivor takes the lease,
    settles that transfer by listing (SUCCEEDED, never resent) and goes on funding the fleet."""
    subs = [_steady(key, i, rate="0.3", balance="10") for i, key in enumerate(REPLICA_STEADY)]
    subs += [_bursty(key, i) for i, key in enumerate(REPLICA_BURSTY)]
    sim = await start_sim(_scenario(Decimal("2000"), subs))
    shared = {"TOPUP_GUARD_REDIS_URL": redis_server.url, "TOPUP_GUARD_LEASE_TTL": str(LEASE_TTL)}
    envs = [_fleet_env(sim, tmp_path, f"replica{i}", **shared) for i in range(2)]
    client = redis_client(redis_server.url, timeout=1.0)
    keys = RedisKeys(DEMO_API_KEY)
    ledger = RedisTransferLedger(redis_client(redis_server.url, timeout=1.0), keys)
    guards = [await GuardProcess.start(env) for env in envs]
    try:
        for g in guards:
            await g.event("guard_started", timeout=30)

        async def read() -> list[TransferEntry]:
            return await ledger.since(0.0)

        # Both up, money moving: every entry is the leader's.
        deadline = time.monotonic() + 20
        while len(sim.account.transfers) < 4:
            assert time.monotonic() < deadline, "no transfers"
            await asyncio.sleep(0.2)
        leader = _holder_of(await client.get(keys.lease), guards)
        assert leader is not None
        follower = next(g for g in guards if g is not leader)
        before_kill = await _until_books_agree(sim, read)
        assert {e.holder for e in before_kill} == {before_kill[0].holder}
        assert before_kill[0].holder.endswith(f":{leader.proc.pid}")

        # The next transfer is applied but its answer never comes: kill the leader meanwhile.
        await inject_fault(sim, endpoint="balance-transfers-post", kind="timeout_after", delay=5)
        deadline = time.monotonic() + 20
        while not (open_ := [e for e in await read() if e.state.unresolved]):
            assert time.monotonic() < deadline, "no transfer hung"
            await asyncio.sleep(0.02)
        hung = open_[0]
        await asyncio.sleep(0.3)  # the simulator has applied it by now (it hangs after)
        leader.kill()
        await leader.proc.wait()
        killed_at = time.monotonic()
        applied_at_kill = len(sim.account.transfers)

        # The survivor takes over, settles the hung transfer and keeps funding.
        deadline = time.monotonic() + 20
        while len(sim.account.transfers) < applied_at_kill + 3:
            assert time.monotonic() < deadline, "the survivor did not go on funding"
            await asyncio.sleep(0.2)
        took = time.monotonic() - killed_at
        for key in REPLICA_STEADY:
            await sim_post(sim, f"/_sim/subaccounts/{key}", {"spend_rate": "0"})
        entries = await _until_books_agree(sim, read)
        lease = await client.get(keys.lease)
        state = await sim_state(sim)
        status = await _status(envs[guards.index(follower)])
    finally:
        codes = [await g.terminate(timeout=15) for g in guards if g.proc.returncode is None]
        await client.aclose()
        await ledger.close()
    assert [c for c, _ in codes] == [0], [g.output[-3000:] for g in guards]

    assert _holder_of(lease, guards) is follower
    settled = next(e for e in entries if e.transfer_id == hung.transfer_id)
    assert settled.state is TransferState.SUCCEEDED, settled
    assert Counter(tr.reference for tr in sim.account.transfers)[hung.reference] == 1
    after = [e for e in entries if e.transfer_id > hung.transfer_id]
    assert after, "the survivor made transfers of its own"
    assert all(e.holder.endswith(f":{follower.proc.pid}") for e in after), after
    assert all(e.holder.endswith(f":{leader.proc.pid}") for e in entries
               if e.transfer_id <= hung.transfer_id)  # fmt: skip
    keys_own = REPLICA_STEADY + REPLICA_BURSTY
    assert _refused(state, keys_own) == dict.fromkeys(keys_own, Decimal(0))
    assert status["fleet"]["list_calls"] > 0
    print(
        f"\nreplicas: {len(sim.account.transfers)} transfers applied, {len(entries)} entries, "
        f"hung #{hung.transfer_id} settled {settled.state.value} by the survivor; funding again "
        f"{took:.1f} s after the kill"
    )


async def test_a_guard_killed_mid_transfer_settles_it_from_its_sqlite_ledger_when_restarted(
    start_sim: Callable[[Scenario], Awaitable[RunningSimulator]], tmp_path: Path
) -> None:
    """SIGKILL while a transfer's POST hangs (applied at Vonage, no answer yet): the restarted
    guard finds the entry open in its SQLite ledger, settles it by listing and never resends."""
    subs = [_steady(key, i, rate="0.3", balance="10") for i, key in enumerate(REPLICA_STEADY)]
    sim = await start_sim(_scenario(Decimal("2000"), subs))
    env = _fleet_env(sim, tmp_path, "ledger")
    path = tmp_path / "ledger.db"

    async def read() -> list[TransferEntry]:
        timelines, _ = read_transfer_timelines(path)
        return [t.entry for t in timelines]

    first = await GuardProcess.start(env)
    second: GuardProcess | None = None
    try:
        await first.event("guard_started", timeout=20)
        await _until_books_agree(sim, read)
        await inject_fault(sim, endpoint="balance-transfers-post", kind="timeout_after", delay=5)
        deadline = time.monotonic() + 20
        while not (open_ := [e for e in await read() if e.state.unresolved]):
            assert time.monotonic() < deadline, "no transfer hung"
            await asyncio.sleep(0.02)
        hung = open_[0]
        await asyncio.sleep(0.3)  # applied by now; the answer never comes
        first.kill()
        await first.proc.wait()
        applied_at_kill = len(sim.account.transfers)

        second = await GuardProcess.start(env)
        await second.event("guard_started", timeout=20)
        deadline = time.monotonic() + 20
        while len(sim.account.transfers) < applied_at_kill + 2:
            assert time.monotonic() < deadline, "the restarted guard did not go on funding"
            await asyncio.sleep(0.2)
        for key in REPLICA_STEADY:
            await sim_post(sim, f"/_sim/subaccounts/{key}", {"spend_rate": "0"})
        entries = await _until_books_agree(sim, read)
    finally:
        first.kill()
        code = (await second.terminate(timeout=15))[0] if second is not None else None
    assert second is not None
    assert code == 0, second.output
    settled = next(e for e in entries if e.transfer_id == hung.transfer_id)
    assert settled.state is TransferState.SUCCEEDED, settled
    assert Counter(tr.reference for tr in sim.account.transfers)[hung.reference] == 1
    assert second.events("transfer_settled"), "the restarted guard settled it by listing"
