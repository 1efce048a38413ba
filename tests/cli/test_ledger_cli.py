"""``topup-guard ledger`` and ``explain`` over SQLite: timelines, filters, and read-only reading.

The ledger is written by the real ``SqliteLedger``; the commands run for real (``main``). The
read-only cases copy the ledger directory, make it unwritable and read it as an unprivileged
user (root ignores file modes, so a root test run drops to ``nobody`` for the read), the way
the image reads it: non-root, read-only root filesystem, no sqlite3 binary.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest

from tests.cli.helpers import clean_env
from topup_guard.cli import main
from topup_guard.ledger.base import AttemptState
from topup_guard.ledger.sqlite import SqliteLedger

NOBODY = 65534
NOW = time.time()


async def write_history(path: Path, *, close: bool = True) -> SqliteLedger:
    """Three attempts: one verified by balance after a timeout, one refused, one dry run."""
    ledger = SqliteLedger(path, account="demo1234")
    old = await ledger.begin(
        balance_before=Decimal("14.77"),
        expected_amount=Decimal("50"),
        reason="forecast below the floor in 90 s",
        wall=NOW - 3 * 3600,
        epoch=0,
        holder="pod-a",
    )
    await ledger.transition(
        old.attempt_id,
        AttemptState.UNKNOWN,
        wall=NOW - 3 * 3600 + 1,
        epoch=0,
        detail="read timeout after sending",
    )
    await ledger.transition(
        old.attempt_id,
        AttemptState.SUCCEEDED,
        wall=NOW - 3 * 3600 + 9,
        epoch=0,
        credited=Decimal("50"),
        evidence="balance step +50",
    )
    refused = await ledger.begin(
        balance_before=Decimal("9.10"),
        expected_amount=None,
        reason="below the floor",
        wall=NOW - 600,
        epoch=0,
        holder="pod-a",
    )
    await ledger.transition(
        refused.attempt_id,
        AttemptState.FAILED,
        wall=NOW - 599,
        epoch=0,
        detail="payment refused (topup failed)",
    )
    await ledger.begin(
        balance_before=Decimal("8"),
        expected_amount=Decimal("50"),
        reason="dry run: would top up",
        wall=NOW - 60,
        epoch=0,
        holder="pod-a",
        dry_run=True,
    )
    if close:
        await ledger.close()
    return ledger


@pytest.fixture
async def ledger_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    clean_env(monkeypatch)
    path = tmp_path / "ledger.db"
    await write_history(path)
    monkeypatch.setenv("TOPUP_GUARD_STATE_PATH", str(path))
    monkeypatch.setenv("TOPUP_GUARD_HEALTH_PORT", "9")  # nothing listens: explain uses the ledger
    return path


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.usefixtures("ledger_env")
def test_ledger_shows_every_attempt_with_its_timeline_evidence_and_reason(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, _ = run(capsys, "ledger")
    assert code == 0
    first, second, third = out.split("\n\n")[:3]
    assert first.startswith("#1  SUCCEEDED")
    assert "reason:   forecast below the floor in 90 s" in first
    assert "evidence: balance step +50, credited EUR 50" in first
    assert [line.split()[1] for line in first.splitlines()[3:]] == [
        "pending",
        "unknown",
        "succeeded",
    ]
    assert "read timeout after sending" in first
    assert second.startswith("#2  FAILED")
    assert "payment refused (topup failed)" in second
    assert third.startswith("#3  DRY_RUN")
    assert "3 shown" in out


@pytest.mark.usefixtures("ledger_env")
def test_ledger_json_holds_exact_money_and_the_events_in_order(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, _ = run(capsys, "ledger", "--json")
    assert code == 0
    data = json.loads(out)
    assert data["store"] == "sqlite"
    first = data["attempts"][0]
    assert first["balance_before"] == "14.77"
    assert first["credited"] == "50"
    assert [e["state"] for e in first["events"]] == ["pending", "unknown", "succeeded"]
    walls = [e["wall"] for e in first["events"]]
    assert walls == sorted(walls)
    assert first["events"][-1]["evidence"] == "balance step +50"
    assert data["attempts"][1]["expected_amount"] is None


@pytest.mark.usefixtures("ledger_env")
@pytest.mark.parametrize(
    ("argv", "ids"),
    [
        (["--since", "2h"], [2, 3]),
        (["--since", "5m"], [3]),
        (["--state", "failed"], [2]),
        (["--state", "succeeded,dry_run"], [1, 3]),
        (["--state", "failed", "--state", "succeeded"], [1, 2]),
        (["--since", "1h", "--state", "succeeded"], []),
    ],
)
def test_ledger_filters_by_age_and_state(
    capsys: pytest.CaptureFixture[str], argv: list[str], ids: list[int]
) -> None:
    code, out, _ = run(capsys, "ledger", "--json", *argv)
    assert code == 0
    assert [a["attempt_id"] for a in json.loads(out)["attempts"]] == ids


@pytest.mark.usefixtures("ledger_env")
def test_ledger_since_takes_an_iso_time(capsys: pytest.CaptureFixture[str]) -> None:
    from datetime import UTC, datetime

    since = datetime.fromtimestamp(NOW - 1800, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    code, out, _ = run(capsys, "ledger", "--json", "--since", since)
    assert code == 0
    assert [a["attempt_id"] for a in json.loads(out)["attempts"]] == [2, 3]


@pytest.mark.usefixtures("ledger_env")
@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--since", "yesterday"], "--since 'yesterday': expected a duration such as 2h"),
        (["--state", "done"], "--state 'done': expected one of pending, unknown, succeeded"),
    ],
)
def test_ledger_refuses_bad_filters_with_exit_2(
    capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    code, out, err = run(capsys, "ledger", *argv)
    assert (code, out) == (2, "")
    assert message in err


def test_ledger_never_creates_a_ledger_where_there_is_none(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    clean_env(monkeypatch)
    missing = tmp_path / "typo" / "ledger.db"
    monkeypatch.setenv("TOPUP_GUARD_STATE_PATH", str(missing))
    code, _, err = run(capsys, "ledger")
    assert code == 1
    assert f"no ledger at {missing}" in err
    assert not missing.parent.exists()


@contextlib.contextmanager
def unprivileged() -> Iterator[None]:
    """Run the block as a user the file modes apply to (``nobody`` when the tests run as root)."""
    if os.geteuid() != 0:
        yield
        return
    os.seteuid(NOBODY)
    try:
        yield
    finally:
        os.seteuid(0)


def read_only_copy(source: Path) -> Path:
    """The ledger's directory copied to a place ``nobody`` can reach, then made unwritable."""
    copy = Path(tempfile.mkdtemp(prefix="topup-guard-ro-"))
    for item in source.parent.iterdir():
        if item.name.startswith(source.name):
            shutil.copy2(item, copy / item.name)
            (copy / item.name).chmod(0o444)
    copy.chmod(0o555)
    return copy / source.name


def fingerprint(directory: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in directory.iterdir()}


@pytest.mark.parametrize("writer_running", [False, True], ids=["guard-stopped", "guard-running"])
async def test_ledger_reads_a_read_only_copy_as_an_unprivileged_user(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    writer_running: bool,
) -> None:
    clean_env(monkeypatch)
    source = tmp_path / "ledger.db"
    writer = await write_history(source, close=not writer_running)  # running: -wal and -shm too
    copy = read_only_copy(source)
    try:
        if writer_running:
            assert Path(f"{copy}-wal").exists()
        before = fingerprint(copy.parent)
        # nobody cannot read the interpreter's own library (under /root): import and start the
        # worker thread before dropping privileges (on the original, so the copy stays as made).
        monkeypatch.setenv("TOPUP_GUARD_STATE_PATH", str(source))
        assert await asyncio.to_thread(main, ["ledger", "--since", "1s"]) == 0
        assert await asyncio.to_thread(main, ["explain", "--url", "http://127.0.0.1:9/"]) == 0
        capsys.readouterr()
        monkeypatch.setenv("TOPUP_GUARD_STATE_PATH", str(copy))
        with unprivileged():
            with pytest.raises(PermissionError):  # the premise: this user cannot write here
                (copy.parent / "probe").write_text("x")
            code = await asyncio.to_thread(main, ["ledger", "--json"])
            out, err = capsys.readouterr()
            explained = await asyncio.to_thread(
                main, ["explain", "--json", "--url", "http://127.0.0.1:9/status"]
            )
            latest = json.loads(capsys.readouterr().out)["attempt"]
        assert code == 0, err
        data = json.loads(out)
        assert [a["state"] for a in data["attempts"]] == ["succeeded", "failed", "dry_run"]
        assert data["note"] is None, "every event read, the write-ahead log included"
        assert (explained, latest["state"]) == (0, "dry_run"), "explain reads it the same way"
        assert fingerprint(copy.parent) == before, "the readers changed nothing"
    finally:
        if writer_running:
            await writer.close()
        copy.parent.chmod(0o755)
        shutil.rmtree(copy.parent, ignore_errors=True)


@pytest.mark.usefixtures("ledger_env")
def test_explain_without_a_running_guard_shows_the_latest_attempt_from_the_ledger(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, _ = run(capsys, "explain")
    assert code == 0
    assert "No guard answered at http://127.0.0.1:9/status" in out
    assert "#3  DRY_RUN" in out
    assert "reason:   dry run: would top up" in out
    code, out, _ = run(capsys, "explain", "--json")
    data = json.loads(out)
    assert data["source"] == "ledger"
    assert data["attempt"]["attempt_id"] == 3


def test_explain_with_no_guard_and_an_empty_ledger_says_there_is_nothing(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    clean_env(monkeypatch)
    path = tmp_path / "ledger.db"
    SqliteLedger(path, account="demo1234")._db.close()  # a guard that never topped up
    monkeypatch.setenv("TOPUP_GUARD_STATE_PATH", str(path))
    code, _, err = run(capsys, "explain", "--url", "http://127.0.0.1:9/status")
    assert code == 1
    assert "nothing to explain" in err


def test_ledger_on_a_damaged_file_is_one_line_and_exit_1(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    clean_env(monkeypatch)
    garbage = tmp_path / "ledger.db"
    garbage.write_bytes(b"not a database, " * 500)
    monkeypatch.setenv("TOPUP_GUARD_STATE_PATH", str(garbage))
    code, out, err = run(capsys, "ledger")
    assert (code, out) == (1, "")
    assert err.startswith(f"topup-guard: LedgerError: the ledger at {garbage} cannot be read")
    assert len(err.splitlines()) == 1
    assert garbage.read_bytes() == b"not a database, " * 500


async def test_a_copy_without_its_wal_index_is_read_with_a_note_on_what_may_be_missing(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # A copy of a running guard's ledger that took the -wal file but not the -shm index, in a
    # directory nobody may write: SQLite cannot rebuild the index, so only the checkpointed part
    # can be read, and the command says so instead of failing or pretending it saw everything.
    clean_env(monkeypatch)
    source = tmp_path / "ledger.db"
    await write_history(source)  # closed: checkpointed into the file
    writer = SqliteLedger(source, account="demo1234")
    await writer.begin(
        balance_before=Decimal("7"),
        expected_amount=Decimal("50"),
        reason="still in the write-ahead log",
        wall=NOW,
        epoch=0,
        holder="pod-a",
    )
    copy = read_only_copy(source)
    try:
        (copy.parent / "ledger.db-shm").chmod(0o644)
        copy.parent.chmod(0o755)
        (copy.parent / "ledger.db-shm").unlink()
        copy.parent.chmod(0o555)
        monkeypatch.setenv("TOPUP_GUARD_STATE_PATH", str(source))  # warm up on the original
        assert await asyncio.to_thread(main, ["ledger", "--since", "1s"]) == 0
        capsys.readouterr()
        monkeypatch.setenv("TOPUP_GUARD_STATE_PATH", str(copy))
        assert not Path(f"{copy}-shm").exists()
        with unprivileged():
            code = await asyncio.to_thread(main, ["ledger", "--json"])
            out, err = capsys.readouterr()
        assert code == 0, err
        data = json.loads(out)
        assert [a["attempt_id"] for a in data["attempts"]] == [1, 2, 3]
        assert "the newest events may be missing" in data["note"]
    finally:
        await writer.close()
        copy.parent.chmod(0o755)
        shutil.rmtree(copy.parent, ignore_errors=True)
