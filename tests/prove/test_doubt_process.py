"""Issue 9 with real processes: SIGTERM and kill -9 around a top-up in doubt, empty secret files,
and the CLI's ``top-up`` next to a running guard (SQLite and Redis).

Each test runs ``python -m topup_guard ...`` as a child of the test (``tests/run/guardproc.py``)
against the simulator serving in the test's loop (real time, real sockets), reads the money's
truth from the simulator and the ledger the guard wrote, and times exits with the monotonic
clock.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.prove.conftest import Tally
from tests.redisproc import RedisServer
from tests.replicas.harness import lease_value, ledger_attempts
from tests.run.guardproc import GuardProcess, free_port, get, guard_env, ledger_states, until
from tests.simctl import sim_post, sim_state
from topup_guard.ledger.redis import redis_client
from topup_guard.sim import RunningSimulator

pytestmark = pytest.mark.slow
FINAL = {"succeeded", "failed", "unconfirmed"}


def latest(path: Path) -> dict[int, str]:
    """Each attempt's latest state in the child's SQLite ledger."""
    out: dict[int, str] = {}
    for attempt, state in ledger_states(path):
        out[attempt] = state
    return out


async def calls(sim: RunningSimulator, endpoint: str) -> int:
    counts = (await sim_state(sim))["calls"].get(endpoint, {})
    return int(sum(counts.values()))


def env_for(sim: RunningSimulator, state: Path, **extra: str) -> dict[str, str]:
    """``guard_env`` with the issue's settle window (the product default, 60 s) and a floor."""
    base = {
        "TOPUP_GUARD_MIN_BALANCE": "10",
        "TOPUP_GUARD_TOPUP_AMOUNT": "50",
        "TOPUP_GUARD_SETTLE_WINDOW": "60",
        "TOPUP_GUARD_TOPUP_LATENCY": "5",
    }
    return guard_env(sim, state, **(base | extra))


async def test_sigterm_during_verification_exits_0_within_10_s_and_the_restart_settles_it(
    sim: RunningSimulator, tmp_path: Path, tally: Tally
) -> None:
    state = tmp_path / "ledger.db"
    # A slow spend: the restart's first reading is within a few cents of the reading taken
    # before the first (not applied) request plus the second one's credit.
    await sim_post(sim, "/_sim/control", {"balance": "9", "spend_rate": "0.01"})
    await sim_post(sim, "/_sim/faults", {"endpoint": "top-up", "kind": "error_500_before"})
    guard = await GuardProcess.start(env_for(sim, state))
    try:
        # The first top-up is in doubt (a not-applied 500); the balance is under the floor, so
        # exhaustion beats doubt: a second one lands while the first is still being verified.
        await until(lambda: latest(state).get(1) == "unknown" and 2 in latest(state), 20)
        await until(lambda: latest(state).get(2) in FINAL, 10)
        assert latest(state)[1] == "unknown", "still verifying when SIGTERM comes"
        code, took = await guard.terminate(timeout=15)
    finally:
        guard.kill()
    assert code == 0, guard.output
    assert took < 10.0, f"SIGTERM during verification took {took:.1f} s"
    tally.peak("sigterm_exit_s", round(took, 2))
    restart = await GuardProcess.start(env_for(sim, state))
    try:
        await until(lambda: all(s in FINAL for s in latest(state).values()), 40)
        await until(lambda: _balance_at_least(sim, 10), 10)
        code2, took2 = await restart.terminate(timeout=15)
    finally:
        restart.kill()
    assert code2 == 0
    account = await sim_state(sim)
    states = latest(state)
    assert states[1] == "unconfirmed", (  # nothing was applied: no invented credit
        f"the not-applied attempt ended {states[1]}: {_ledger_rows(state)}; account top-ups"
        f" {account['topups']}"
    )
    succeeded = sum(1 for s in states.values() if s == "succeeded")
    assert succeeded == len(account["topups"]), (states, account["topups"])
    assert Decimal(str(account["failed_spend"])) == 0
    tally.add("sigterm_runs")
    tally.add("refused_eur", float(account["failed_spend"]))
    tally.add("credits_applied", len(account["topups"]))
    tally.add("succeeded_in_ledger", succeeded)
    tally.add("unresolved_after_restart", sum(1 for s in states.values() if s not in FINAL))
    tally.peak("restart_sigterm_exit_s", round(took2, 2))


def _ledger_rows(path: Path) -> list[tuple[Any, ...]]:
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return db.execute(
            "SELECT attempt_id, state, balance_before, credited, evidence, detail FROM"
            " ledger_events ORDER BY seq"
        ).fetchall()
    finally:
        db.close()


async def _balance_at_least(sim: RunningSimulator, floor: float) -> bool:
    return float((await sim_state(sim))["balance"]) >= floor


async def test_sigterm_while_a_top_up_waits_out_retry_after_exits_promptly_leaving_no_pending(
    sim: RunningSimulator, tmp_path: Path, tally: Tally
) -> None:
    state = tmp_path / "ledger.db"
    await sim_post(sim, "/_sim/control", {"balance": "9", "spend_rate": "0.05"})
    await sim_post(sim, "/_sim/faults",
                   {"endpoint": "top-up", "kind": "rate_limit", "retry_after": 20})  # fmt: skip
    guard = await GuardProcess.start(env_for(sim, state))
    try:
        await until(lambda: latest(state).get(1) == "pending", 20)
        await until(lambda: _calls_at_least(sim, "top-up", 1), 5)
        code, took = await guard.terminate(timeout=15)
    finally:
        guard.kill()
    assert code == 0, guard.output
    assert took < 10.0, f"SIGTERM while waiting out Retry-After took {took:.1f} s"
    assert latest(state) == {1: "failed"}, "a 429 applied nothing: FAILED, never PENDING"
    assert (await sim_state(sim))["topups"] == []
    tally.peak("sigterm_in_retry_after_exit_s", round(took, 2))


async def _calls_at_least(sim: RunningSimulator, endpoint: str, n: int) -> bool:
    return await calls(sim, endpoint) >= n


async def test_kill_9_then_an_immediate_restart_polls_at_once(
    sim: RunningSimulator, tmp_path: Path, tally: Tally
) -> None:
    state = tmp_path / "ledger.db"
    await sim_post(sim, "/_sim/control", {"balance": "9", "spend_rate": "0.05"})
    await sim_post(sim, "/_sim/faults",
                   {"endpoint": "top-up", "kind": "timeout_after", "delay": 60})  # fmt: skip
    guard = await GuardProcess.start(env_for(sim, state, TOPUP_GUARD_HTTP_TIMEOUT="30"))
    try:
        await until(lambda: latest(state) == {1: "pending"}, 20)
        await until(lambda: _topups_applied(sim, 1), 5)
    finally:
        guard.kill()  # SIGKILL: no shutdown code runs
        await guard.wait(10)
    reads = await calls(sim, "get-balance")
    started = time.monotonic()
    restart = await GuardProcess.start(env_for(sim, state))
    try:
        await until(lambda: _calls_at_least(sim, "get-balance", reads + 1), 15)
        first_poll = time.monotonic() - started
        await until(lambda: latest(state) == {1: "succeeded"}, 30)
        code, _ = await restart.terminate(timeout=15)
    finally:
        restart.kill()
    assert code == 0
    # Python and the guard start in about a second here; reconciliation must not come first.
    assert first_poll < 5.0, f"the first poll came {first_poll:.1f} s after the restart"
    account = await sim_state(sim)
    assert len(account["topups"]) == 1, "the PENDING top-up was applied: no second one"
    tally.peak("first_poll_after_restart_s", round(first_poll, 2))
    tally.add("kills_survived")


async def _topups_applied(sim: RunningSimulator, n: int) -> bool:
    return len((await sim_state(sim))["topups"]) >= n


@pytest.mark.parametrize("command", ["check", "balance", "run"])
async def test_an_empty_secret_file_is_missing_exit_2_naming_the_variable(
    command: str, sim: RunningSimulator, tmp_path: Path, tally: Tally
) -> None:
    empty = tmp_path / "secret"
    empty.write_text("")
    env = guard_env(sim, tmp_path / "ledger.db", VONAGE_API_SECRET_FILE=str(empty))
    env.pop("VONAGE_API_SECRET")
    proc = await GuardProcess.start(env, command)
    code = await proc.wait(15)
    assert code == 2, proc.output
    assert "VONAGE_API_SECRET" in proc.output
    assert "empty" in proc.output
    assert "Traceback" not in proc.output
    tally.add("empty_file_commands_exit_2")


@pytest.mark.parametrize("command", ["check", "run"])
async def test_an_empty_trx_file_is_a_configuration_error_at_start_not_a_pending_entry(
    command: str, sim: RunningSimulator, tmp_path: Path, tally: Tally
) -> None:
    empty = tmp_path / "trx"
    empty.write_text("")
    await sim_post(sim, "/_sim/control", {"balance": "5", "spend_rate": "0.05"})
    env = guard_env(sim, tmp_path / "ledger.db", TOPUP_GUARD_TRX_FILE=str(empty))
    env.pop("TOPUP_GUARD_TRX")
    proc = await GuardProcess.start(env, command)
    code = await proc.wait(15)
    assert code == 2, proc.output
    assert "TOPUP_GUARD_TRX" in proc.output
    assert "Traceback" not in proc.output
    assert ledger_states(tmp_path / "ledger.db") == [], "nothing recorded that cannot be sent"
    assert await calls(sim, "top-up") == 0
    tally.add("empty_file_commands_exit_2")


async def test_a_value_of_1e16_in_a_real_process_is_a_misread_not_a_crash(
    sim: RunningSimulator, tmp_path: Path, tally: Tally
) -> None:
    await sim_post(sim, "/_sim/faults",
                   {"endpoint": "get-balance", "kind": "value_absurd", "count": 6})  # fmt: skip
    guard = await GuardProcess.start(env_for(sim, tmp_path / "ledger.db"))
    try:
        await until(lambda: _faults_left(sim, 0), 20)
        await until(
            lambda: bool(guard.events("reading_dropped")) or guard.proc.returncode is not None, 5
        )
        assert guard.proc.returncode is None, f"the guard died:\n{guard.output}"
        code, _ = await guard.terminate()
    finally:
        guard.kill()
    assert code == 0
    assert "Traceback" not in guard.output
    assert len(guard.events("reading_dropped")) >= 6
    tally.add("absurd_values_survived_in_process", 6)


async def _faults_left(sim: RunningSimulator, n: int) -> bool:
    return len((await sim_state(sim))["faults"]) <= n


# --- the CLI's top-up ---------------------------------------------------------------------


async def cli_top_up(env: dict[str, str], *flags: str) -> tuple[int, dict[str, Any] | None, str]:
    proc = await GuardProcess.start(env, "top-up", "--yes", "--json", *flags)
    code = await proc.wait(40)
    out = "\n".join(proc.stdout).strip()
    try:
        data = json.loads(out) if out else None
    except ValueError:
        data = None
    return code, data, "\n".join(proc.stderr)


# The CLI's POST: held 3 s then answered (in flight while the guard polls); applied but the
# answer dropped (verified by balance); not applied at all (unconfirmed after its window).
CLI_FAULTS: dict[str, tuple[dict[str, Any], str, int, str, int]] = {
    "slow": ({"kind": "slow", "delay": 3}, "10", 0, "succeeded", 1),
    "timeout_after": ({"kind": "timeout_after", "delay": 3}, "2", 0, "succeeded", 1),
    "error_500_before": ({"kind": "error_500_before"}, "2", 3, "unconfirmed", 0),
}


@pytest.mark.parametrize("kind", list(CLI_FAULTS))
async def test_the_cli_top_up_with_sqlite_next_to_run_is_settled_by_the_cli_alone(
    kind: str, sim: RunningSimulator, tmp_path: Path, tally: Tally
) -> None:
    fault, http_timeout, exit_code, outcome, charged = CLI_FAULTS[kind]
    state = tmp_path / "ledger.db"
    port = free_port()
    await sim_post(sim, "/_sim/control", {"balance": "100", "spend_rate": "0.01"})
    guard = await GuardProcess.start(env_for(sim, state, TOPUP_GUARD_HEALTH_PORT=str(port)))
    try:
        await guard.event("guard_started")
        await sim_post(sim, "/_sim/faults", {"endpoint": "top-up", **fault})
        # A 1 s credit latency keeps the CLI's own verification window to 3 s.
        env = env_for(sim, state, TOPUP_GUARD_HTTP_TIMEOUT=http_timeout,
                      TOPUP_GUARD_TOPUP_LATENCY="1")  # fmt: skip
        code, data, err = await cli_top_up(env)
        assert code == exit_code, err
        assert data is not None
        assert data["outcome"] == outcome, data
        if charged:
            assert data["credited"] == "50.00", data
        status = await _status_when(
            port, lambda s: s["caps_used"]["topups_last_hour"] >= 1, within=10
        )
        await asyncio.sleep(2.0)  # two more polls of the guard: does it append anything?
        gcode, _ = await guard.terminate()
    finally:
        guard.kill()
    assert gcode == 0
    events = [s for a, s in ledger_states(state) if a == 1]
    assert events[0] == "pending", events
    finals = [s for s in events if s in FINAL]
    assert set(finals) == {outcome}, f"a second verdict was appended: {events}"
    assert events[-1] == outcome, events
    assert "found pending" not in guard.output, "the guard took over the CLI's attempt"
    assert [a for a, _ in ledger_states(state)].count(2) == 0, "the guard bought nothing"
    assert len((await sim_state(sim))["topups"]) == charged
    assert status["caps_used"]["topups_last_hour"] == 1, (
        "the guard counts the CLI's top-up in its caps"
    )
    tally.add("cli_topups_sqlite")
    tally.add("cli_topups_taken_over", 0)


async def test_sigterm_while_a_top_up_answer_is_held_exits_within_10_s_and_restart_settles_it(
    sim: RunningSimulator, tmp_path: Path, tally: Tally
) -> None:
    state = tmp_path / "ledger.db"
    await sim_post(sim, "/_sim/control", {"balance": "9", "spend_rate": "0.05"})
    await sim_post(sim, "/_sim/faults",
                   {"endpoint": "top-up", "kind": "timeout_after", "delay": 60})  # fmt: skip
    guard = await GuardProcess.start(env_for(sim, state, TOPUP_GUARD_HTTP_TIMEOUT="30"))
    try:
        await until(lambda: latest(state) == {1: "pending"}, 20)
        await until(lambda: _topups_applied(sim, 1), 5)
        code, took = await guard.terminate(timeout=15)
    finally:
        guard.kill()
    assert code == 0, guard.output
    assert took < 10.0, f"SIGTERM with a POST on the wire took {took:.1f} s"
    assert latest(state) == {1: "pending"}, "left open for the next start"
    tally.peak("sigterm_post_on_the_wire_exit_s", round(took, 2))
    restart = await GuardProcess.start(env_for(sim, state))
    try:
        await until(lambda: latest(state).get(1) in FINAL, 25)
        if latest(state)[1] != "succeeded":
            account = await sim_state(sim)
            raise AssertionError(
                f"attempt 1 (applied, answer held) ended {latest(state)[1]} after the restart:"
                f" {_ledger_rows(state)}; account top-ups {account['topups']}"
            )
        code2, _ = await restart.terminate(timeout=15)
    finally:
        restart.kill()
    assert code2 == 0
    account = await sim_state(sim)
    assert len(account["topups"]) == 1
    assert Decimal(str(account["failed_spend"])) == 0
    tally.add("restarts_settling_a_held_post")


async def _status_when(port: int, ok: Any, within: float = 10.0) -> dict[str, Any]:
    deadline = time.monotonic() + within
    while True:
        try:
            code, body = await get(f"http://127.0.0.1:{port}/status")
        except aiohttp.ClientError:  # the health server is not up yet
            code, body = 0, ""
        data: dict[str, Any] = json.loads(body) if code == 200 else {}
        if data and ok(data):
            return data
        if time.monotonic() > deadline:
            raise AssertionError(f"/status never matched: {data}")
        await asyncio.sleep(0.1)


async def test_the_cli_top_up_with_redis_refuses_while_run_holds_the_lease_then_shares_the_ledger(
    sim: RunningSimulator, redis_server: RedisServer, tmp_path: Path, tally: Tally
) -> None:
    await sim_post(sim, "/_sim/control", {"balance": "100", "spend_rate": "0.01"})
    redis = {"TOPUP_GUARD_REDIS_URL": redis_server.url, "TOPUP_GUARD_LEASE_TTL": "2"}
    inspect = redis_client(redis_server.url, timeout=1.0)
    port = free_port()
    guard = await GuardProcess.start(
        env_for(sim, tmp_path / "guard.db", TOPUP_GUARD_HEALTH_PORT=str(port), **redis)
    )
    try:
        await until(lambda: _leased(inspect), 15)
        # The CLI has its own SQLite path: were it to open SQLite, its attempt would be
        # invisible to the guard. With Redis set it must use the shared store.
        cli_env = env_for(sim, tmp_path / "cli.db", **redis)
        code, _, err = await cli_top_up(cli_env)
        assert code == 1, err
        assert "lease" in err, err
        assert (await sim_state(sim))["topups"] == [], "refused: nothing charged"
        gcode, _took = await guard.terminate()
        assert gcode == 0
        await until(lambda: _not_leased(inspect), 10)
        code, data, err = await cli_top_up(cli_env)
        assert code == 0, err
        assert data is not None
        assert data["outcome"] == "succeeded", data
        attempts = await ledger_attempts(inspect)
        assert [a["state"] for a in attempts] == ["succeeded"], attempts
        assert "manual" in attempts[0]["reason"]
        assert not (tmp_path / "cli.db").exists() or ledger_states(tmp_path / "cli.db") == []
        # A guard started afterwards reads the shared ledger: the CLI's top-up is in its caps.
        port2 = free_port()
        again = await GuardProcess.start(
            env_for(sim, tmp_path / "guard2.db", TOPUP_GUARD_HEALTH_PORT=str(port2), **redis)
        )
        try:
            status = await _status_when(
                port2, lambda s: s["caps_used"]["topups_last_hour"] >= 1, 20
            )
            assert status["caps_used"]["topups_last_hour"] == 1
            await again.terminate()
        finally:
            again.kill()
    finally:
        guard.kill()
        await inspect.aclose()
    assert len((await sim_state(sim))["topups"]) == 1
    tally.add("cli_topups_redis")
    tally.add("cli_refusals_while_leased")


async def _leased(redis: Any) -> bool:
    return await lease_value(redis) is not None


async def _not_leased(redis: Any) -> bool:
    return await lease_value(redis) is None


async def test_the_cli_top_up_respects_dry_run_and_the_hourly_cap_unless_forced(
    sim: RunningSimulator, tmp_path: Path, tally: Tally
) -> None:
    state = tmp_path / "ledger.db"
    code, _, err = await cli_top_up(env_for(sim, state, TOPUP_GUARD_DRY_RUN="true"))
    assert code == 1, err
    assert "DRY_RUN" in err, err
    assert (await sim_state(sim))["topups"] == []
    code, data, err = await cli_top_up(env_for(sim, state, TOPUP_GUARD_DRY_RUN="true"), "--force")
    assert code == 0, err
    assert data is not None
    assert data["outcome"] == "succeeded", err
    capped = env_for(sim, state, TOPUP_GUARD_MAX_TOPUPS_PER_HOUR="1")
    code, _, err = await cli_top_up(capped)
    assert code == 1, err
    assert "caps" in err, err
    assert len((await sim_state(sim))["topups"]) == 1, "the cap refused the second charge"
    events = ledger_states(state)
    assert [s for _, s in events].count("pending") == 1, "refusals record nothing"
    db = sqlite3.connect(f"file:{state}?mode=ro", uri=True)
    try:
        (reason,) = db.execute("SELECT reason FROM ledger_events ORDER BY seq LIMIT 1").fetchone()
    finally:
        db.close()
    assert "--force" in reason, reason
    assert "DRY_RUN" in reason, reason
    tally.add("cli_refusals_dry_run_or_cap", 2)
