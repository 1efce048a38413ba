"""``topup-guard run`` as the process Kubernetes starts: polls, tops up, stops cleanly on SIGTERM.

Each test spawns the real console entry point (``python -m topup_guard run``) against the
simulator serving in the test's loop, configured only by environment variables.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

from tests.run.guardproc import GuardProcess, free_port, get, guard_env, ledger_states, until
from tests.simctl import sim_post, sim_state
from topup_guard.sim import RunningSimulator

SECRET = "DemoSecret1"  # the simulator's demo secret: must never be printed


async def test_tops_up_a_low_spending_account_and_reports_it_on_status(
    sim: RunningSimulator, tmp_path: Path
) -> None:
    await sim_post(sim, "/_sim/control", {"balance": "5", "spend_rate": "0.01"})
    port = free_port()
    guard = await GuardProcess.start(guard_env(sim, tmp_path / "ledger.db", health_port=port))
    try:
        done = await guard.event("topup_succeeded")
        assert done["balance_before"].startswith("4.9")
        await until(lambda: _ready(port), timeout=5)
        await until(lambda: _status_balance_above(port, 50), timeout=5)  # the credit was seen
        status_code, body = await get(f"http://127.0.0.1:{port}/status")
        assert status_code == 200
        status = json.loads(body)
        assert status["decision"]["action"] in ("nothing", "warn")
        assert status["last_topup"]["outcome"] == "succeeded"
    finally:
        code, _ = await guard.terminate()
    assert code == 0
    state = await sim_state(sim)
    assert len(state["topups"]) == 1, "one low balance, one charge"
    assert ledger_states(tmp_path / "ledger.db")[-1] == (1, "succeeded")


async def _status_balance_above(port: int, floor: float) -> bool:
    _, body = await get(f"http://127.0.0.1:{port}/status")
    balance = json.loads(body)["balance"]
    return balance is not None and float(balance) > floor


async def _ready(port: int) -> bool:
    code, _ = await get(f"http://127.0.0.1:{port}/readyz")
    return code == 200


async def test_sigterm_while_idle_exits_zero_well_under_a_second(
    sim: RunningSimulator, tmp_path: Path
) -> None:
    env = guard_env(sim, tmp_path / "ledger.db", TOPUP_GUARD_POLL_INTERVAL="30")
    guard = await GuardProcess.start(env)
    await guard.event("guard_started")
    await until(lambda: _polled(sim), timeout=5)
    code, took = await guard.terminate()
    assert code == 0
    assert took < 1.0, f"stop took {took:.2f} s while asleep between polls"
    assert guard.events("guard_stopped"), guard.output
    assert guard.stderr == [], "a clean stop writes no traceback"


async def test_sigterm_while_a_poll_read_is_retried_stops_without_waiting_out_the_retries(
    sim: RunningSimulator, tmp_path: Path
) -> None:
    # Every read fails (retried for up to 20 s); a balance read is idempotent, so dropping it
    # at shutdown is safe, unlike a top-up's verification reads.
    fault = {"endpoint": "get-balance", "kind": "html_error", "count": 50}
    await sim_post(sim, "/_sim/faults", fault)
    guard = await GuardProcess.start(guard_env(sim, tmp_path / "ledger.db"))
    await guard.event("guard_started")
    await until(lambda: _read_failed(sim, times=2), timeout=10)  # inside the retry backoff
    failed_before = len(guard.events("poll_failed"))
    code, took = await guard.terminate()
    assert code == 0
    assert took < 1.0, f"stop took {took:.2f} s: the retry waits were sat out"
    assert guard.events("guard_stopped")
    assert len(guard.events("poll_failed")) == failed_before, "a shutdown is no Vonage failure"


async def _read_failed(sim: RunningSimulator, times: int) -> bool:
    calls = (await sim_state(sim))["calls"]
    return int(calls.get("get-balance", {}).get("502", 0)) >= times


async def _polled(sim: RunningSimulator) -> bool:
    calls = (await sim_state(sim))["calls"]
    return bool(calls.get("get-balance", {}).get("200"))


async def test_sigterm_during_a_top_up_lets_the_post_answer_then_exits_zero(
    sim: RunningSimulator, tmp_path: Path
) -> None:
    ledger = tmp_path / "ledger.db"
    await sim_post(sim, "/_sim/faults", {"endpoint": "top-up", "kind": "slow", "delay": 2})
    await sim_post(sim, "/_sim/control", {"balance": "5", "spend_rate": "0.01"})
    guard = await GuardProcess.start(guard_env(sim, ledger))
    try:
        await until(lambda: (1, "pending") in ledger_states(ledger), timeout=10)
        await until(lambda: _fault_taken(sim), timeout=5)  # the POST is at the simulator
    except BaseException:
        guard.kill()
        raise
    code, took = await guard.terminate(timeout=15)
    assert code == 0, guard.output
    assert 0.5 < took < 10, "the slow answer (2 s) was waited for, within the 10 s bound"
    assert ledger_states(ledger)[-1] == (1, "succeeded"), ledger_states(ledger)
    assert len((await sim_state(sim))["topups"]) == 1, "charged exactly once"
    events = [r["event"] for r in guard.records()]
    assert "guard_stopped" in events


async def _fault_taken(sim: RunningSimulator) -> bool:
    faults: list[object] = (await sim_state(sim))["faults"]
    return faults == []


@pytest.mark.parametrize(
    ("change", "variables"),
    [
        ({"VONAGE_API_SECRET": ""}, ["VONAGE_API_SECRET"]),
        (
            {"TOPUP_GUARD_POLL_MIN": "0.1", "TOPUP_GUARD_MAX_TOPUPS_PER_HOUR": SECRET},
            ["TOPUP_GUARD_POLL_MIN", "TOPUP_GUARD_MAX_TOPUPS_PER_HOUR"],
        ),
    ],
    ids=["missing-secret", "two-bad-values"],
)
async def test_bad_configuration_exits_2_naming_each_variable_without_a_traceback(
    tmp_path: Path, change: dict[str, str], variables: list[str]
) -> None:
    env = guard_env(None, tmp_path / "ledger.db", TOPUP_GUARD_REST_URL="http://127.0.0.1:9")
    env.update(change)
    guard = await GuardProcess.start(env)
    code = await guard.wait()
    assert code == 2
    problems = [line for line in guard.stderr if line.startswith("topup-guard: ")]
    assert len(problems) == len(variables), guard.output
    for line, name in zip(problems, variables, strict=True):
        assert line.startswith(f"topup-guard: {name}:")
    assert "Traceback" not in guard.output
    assert SECRET not in guard.output
    assert not (tmp_path / "ledger.db").exists()


async def test_a_taken_health_port_exits_2_naming_the_variable(
    sim: RunningSimulator, tmp_path: Path
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        guard = await GuardProcess.start(guard_env(sim, tmp_path / "ledger.db", health_port=port))
        code = await guard.wait()
    assert code == 2, guard.output
    assert guard.stderr == [
        f"topup-guard: TOPUP_GUARD_HEALTH_PORT: cannot listen on 127.0.0.1:{port} (address "
        "already in use); choose a free port, or 0 to turn the health server off (for example "
        "TOPUP_GUARD_HEALTH_PORT=8080)"
    ]
    assert not guard.events("guard_started")
    assert "top-up" not in (await sim_state(sim))["calls"]


def _not_a_directory(tmp_path: Path) -> Path:
    (tmp_path / "file").write_text("x")
    return tmp_path / "file" / "ledger.db"


def _not_a_database(tmp_path: Path) -> Path:
    path = tmp_path / "ledger.db"
    path.write_bytes(b"this is not sqlite" * 100)
    return path


def _a_directory(tmp_path: Path) -> Path:
    (tmp_path / "ledger.db").mkdir()
    return tmp_path / "ledger.db"


@pytest.mark.parametrize("make_path", [_not_a_directory, _not_a_database, _a_directory])
async def test_unusable_ledger_path_is_a_clear_error_and_nothing_is_charged(
    sim: RunningSimulator, tmp_path: Path, make_path: object
) -> None:
    assert callable(make_path)
    path: Path = make_path(tmp_path)
    await sim_post(sim, "/_sim/control", {"balance": "1", "spend_rate": "0.05"})
    guard = await GuardProcess.start(guard_env(sim, path))
    code = await guard.wait()
    assert code != 0
    assert "Traceback" not in guard.output
    assert any("ledger" in line and str(path) in line for line in guard.stderr), guard.output
    assert "TOPUP_GUARD_STATE_PATH" in guard.output or "no top-up" in guard.output
    assert (await sim_state(sim))["topups"] == []
    assert "top-up" not in (await sim_state(sim))["calls"]
