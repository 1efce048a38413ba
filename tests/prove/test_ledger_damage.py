"""A ledger that is garbage, truncated, unreachable, read-only or gone: a clear error (exit 1,
one line naming the file and what to do, no top-up) or a safe, *announced* recovery.

Each case runs a real ``topup-guard run`` against a simulator whose balance is below the floor
and falling, so a guard that silently carried on would top up at once.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import tempfile
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from tests.prove.conftest import Tally
from tests.prove.netrig import run_guard
from tests.prove.worker import Worker, ctx_of, ledger_states, wait_for, worker_env
from topup_guard.errors import LedgerError
from topup_guard.ledger.base import AttemptState
from topup_guard.ledger.sqlite import SqliteLedger
from topup_guard.sim import RunningSimulator

NOBODY = 65534


def low_and_spending(sim: RunningSimulator) -> None:
    t = ctx_of(sim).advance()
    sim.account.set_balance(Decimal("9"), t)
    sim.account.set_spend_rate(Decimal("0.05"), t)


async def make_ledger(path: Path, attempts: int = 30) -> None:
    """A real ledger with history (what caps are counted from)."""
    ledger = SqliteLedger(path, account="demo1234")
    for _ in range(attempts):
        a = await ledger.begin(balance_before=Decimal(5), expected_amount=Decimal(50),
                               reason="history " * 20, wall=1.0, epoch=0, holder="h")  # fmt: skip
        await ledger.transition(a.attempt_id, AttemptState.SUCCEEDED, wall=2.0, epoch=0)
    await ledger.close()


async def refused(sim: RunningSimulator, state: Path, tmp: Path, tally: Tally,
                  user: int | None = None) -> str:  # fmt: skip
    """Run the worker; it must exit 1 with a one-line ledger error and top up nothing."""
    worker = Worker(worker_env(sim.url, state), tmp / "worker.log", user=user)
    try:
        code = await asyncio.to_thread(worker.wait, 20.0)
    finally:
        worker.ensure_dead()
    text = worker.text()
    assert code == 1, text
    assert sim.account.topups == [], "a damaged ledger must never lead to a top-up"
    assert ctx_of(sim).calls_by_endpoint().get("top-up") is None
    line = next(ln for ln in text.splitlines() if ln.startswith("topup-guard: LedgerError"))
    assert "no top-up will happen" in line
    tally.add("damaged_ledgers_refused")
    return line


@pytest.mark.slow
async def test_garbage_file_is_refused_and_kept_as_evidence(
    sim: RunningSimulator, tmp_path: Path, tally: Tally
) -> None:
    low_and_spending(sim)
    state = tmp_path / "ledger.db"
    garbage = os.urandom(4096)
    state.write_bytes(garbage)
    line = await refused(sim, state, tmp_path, tally)
    assert str(state) in line
    assert "Move the file aside" in line
    assert state.read_bytes() == garbage, "the evidence must be left untouched"


@pytest.mark.slow
async def test_truncated_ledger_is_refused(
    sim: RunningSimulator, tmp_path: Path, tally: Tally
) -> None:
    low_and_spending(sim)
    state = tmp_path / "ledger.db"
    await make_ledger(state)
    with state.open("r+b") as f:
        f.truncate(state.stat().st_size // 2)
    line = await refused(sim, state, tmp_path, tally)
    assert "malformed" in line


@pytest.mark.slow
async def test_directory_that_cannot_be_created_is_refused(
    sim: RunningSimulator, tmp_path: Path, tally: Tally
) -> None:
    low_and_spending(sim)
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the ledger's directory should be")
    line = await refused(sim, blocker / "sub" / "ledger.db", tmp_path, tally)
    assert "cannot be opened" in line
    assert "TOPUP_GUARD_STATE_PATH" in line


async def test_read_only_ledger_is_refused_without_advice_to_discard_it(tally: Tally) -> None:
    # Root ignores file modes, so as root the ledger is opened with the effective uid of nobody
    # (the venv's interpreter is not reachable by nobody, so this one runs in-process); any
    # other user is already bound by them. In a world-writable directory, on a ledger it may
    # read but not write.
    shared = Path(tempfile.mkdtemp(prefix="topup-guard-ro-"))
    try:
        shared.chmod(0o777)
        state = shared / "ledger.db"
        await make_ledger(state)
        state.chmod(0o444)
        as_root = os.geteuid() == 0
        if as_root:
            os.seteuid(NOBODY)
        try:
            with pytest.raises(LedgerError) as caught:
                SqliteLedger(state, account="demo1234")
        finally:
            if as_root:
                os.seteuid(0)
        message = str(caught.value)
        assert "read-only" in message
        assert "no top-up will happen" in message
        assert "Move the file aside" not in message, "discarding the file would reset the caps"
        assert [s for _, s in ledger_states(state)] == ["succeeded"] * 30, "history intact"
        tally.add("damaged_ledgers_refused")
    finally:
        shutil.rmtree(shared, ignore_errors=True)


async def test_empty_file_or_missing_ledger_is_a_new_ledger_and_says_so(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, tally: Tally
) -> None:
    caplog.set_level(logging.WARNING, logger="topup_guard.ledger")
    state = tmp_path / "ledger.db"
    await make_ledger(state, attempts=3)
    assert [r.message for r in caplog.records].count("ledger_created") == 1  # first start
    caplog.clear()
    reopened = SqliteLedger(state, account="demo1234")
    assert len(await reopened.latest(10)) == 3
    await reopened.close()
    assert "ledger_created" not in [r.message for r in caplog.records]
    for suffix in ("", "-wal", "-shm"):
        Path(f"{state}{suffix}").unlink(missing_ok=True)
    state.write_bytes(b"")  # emptied (a 0-byte file is a valid, empty SQLite database)
    fresh = SqliteLedger(state, account="demo1234")
    assert await fresh.latest(10) == []
    await fresh.close()
    assert [r.message for r in caplog.records].count("ledger_created") == 1
    tally.add("new_ledgers_announced")


@pytest.mark.slow
async def test_deleted_ledger_restarts_the_caps_and_the_worker_logs_it(
    sim: RunningSimulator, tmp_path: Path, tally: Tally
) -> None:
    state = tmp_path / "ledger.db"
    await make_ledger(state)
    for suffix in ("", "-wal", "-shm"):
        Path(f"{state}{suffix}").unlink(missing_ok=True)
    low_and_spending(sim)
    worker = Worker(worker_env(sim.url, state), tmp_path / "worker.log")
    try:
        await wait_for("the top-up", lambda: [s for _, s in ledger_states(state)] == ["succeeded"])
        assert worker.terminate() == 0
    finally:
        worker.ensure_dead()
    # A new ledger knows no history: the caps restart (documented), and the log says so.
    assert '"event":"ledger_created"' in worker.text()
    assert len(sim.account.topups) == 1
    tally.add("new_ledgers_announced")


class FullDisk:
    """The real ledger, except that every new attempt fails to be written (disk full)."""

    def __init__(self, inner: SqliteLedger) -> None:
        self._inner = inner
        self.begins = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    async def begin(self, **kw: Any) -> Any:
        self.begins += 1
        raise LedgerError("ledger write failed: database or disk is full")


async def test_ledger_write_failing_mid_run_sends_nothing(tmp_path: Path, tally: Tally) -> None:
    """A disk that fills under a running guard: ``begin`` fails, so the POST is never sent;
    the guard keeps polling and tries again later (the account may run dry: that is the price
    of never spending without an audit entry, and ``topup_not_started`` is logged as an error)."""
    disks: list[FullDisk] = []

    def wrap(ledger: SqliteLedger) -> FullDisk:
        disks.append(FullDisk(ledger))
        return disks[-1]

    result = await run_guard(tmp_path, [], seconds=120.0, wrap_ledger=wrap)
    assert disks[0].begins >= 2, "the guard must have decided to top up, and tried again"
    assert result.api.posts == 0
    assert result.sim.account.topups == []
    assert result.ledger_states == []
    tally.add("ledger_write_failures_survived", disks[0].begins)
