"""``topup-guard ledger`` in fleet mode over SQLite: transfers beside top-ups, per account.

Both histories are written by the real ledgers into one file (as ``fleet.build`` does) and read
by the real command (``main``), which opens the file read-only.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.cli.fleet_history import SUB_A, SUB_B, SUB_C, write_transfers
from tests.cli.helpers import clean_env
from tests.cli.test_ledger_cli import ledger_env, run, write_history
from topup_guard.fleet.transfer_ledger import SqliteTransferLedger

__all__ = ["ledger_env"]  # the single-account fixture, reused
PRIMARY = "demo1234"  # the account write_history binds the top-up ledger to


@pytest.fixture
async def fleet_ledger(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    clean_env(monkeypatch)
    path = tmp_path / "ledger.db"
    await write_history(path)
    transfers = SqliteTransferLedger(path)
    await write_transfers(transfers)
    await transfers.close()
    monkeypatch.setenv("TOPUP_GUARD_STATE_PATH", str(path))
    monkeypatch.setenv("TOPUP_GUARD_HEALTH_PORT", "9")
    return path


@pytest.mark.usefixtures("fleet_ledger")
def test_ledger_lists_transfers_beside_top_ups_each_naming_its_subaccount(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, _ = run(capsys, "ledger")
    assert code == 0
    blocks = out.split("\n\n")
    assert [b.split()[0] for b in blocks[:3]] == ["#1", "#2", "#3"], "the top-ups come first"
    transfers = [b for b in blocks if b.startswith("transfer #")]
    assert len(transfers) == 3
    first = transfers[0]
    assert first.startswith("transfer #1  SUCCEEDED")
    assert f"to {SUB_A}: EUR 10" in first
    assert "moved EUR 10.00" in first
    assert "reference: tg-" in first
    assert "(Vonage id v-77)" in first
    states = [line.split()[1] for line in first.splitlines() if line.strip().startswith("20")]
    assert states == ["pending", "unknown", "succeeded", "failed"]
    assert "superseded: the transfer was already settled" in first
    assert f"to {SUB_B}" in transfers[1]
    assert "refused: Insufficient Credit" in transfers[1]
    assert transfers[2].startswith("transfer #3  PENDING")
    assert f"to {SUB_C}" in transfers[2]
    assert out.rstrip().endswith("3 shown, 3 transfers)")


@pytest.mark.usefixtures("fleet_ledger")
def test_ledger_json_gives_each_transfer_its_account_reference_state_amounts_and_events(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, _ = run(capsys, "ledger", "--json")
    assert code == 0
    data = json.loads(out)
    assert data["primary"] == PRIMARY
    assert len(data["attempts"]) == 3
    a, b, c = data["transfers"]
    assert (a["account"], a["state"], a["amount"], a["applied_amount"]) == (
        SUB_A, "succeeded", "10", "10.00"
    )  # fmt: skip
    assert a["reference"].startswith("tg-")
    assert a["reference"].endswith("-1")
    assert len({a["reference"], b["reference"], c["reference"]}) == 3
    assert [e["state"] for e in a["events"]] == ["pending", "unknown", "succeeded", "failed"]
    assert [e["superseded"] for e in a["events"]] == [False, False, False, True]
    assert (b["account"], b["state"], b["applied_amount"]) == (SUB_B, "failed", None)
    assert (c["account"], c["state"]) == (SUB_C, "pending")


@pytest.mark.usefixtures("fleet_ledger")
def test_account_filters_to_one_subaccount_or_to_the_primarys_top_ups(
    capsys: pytest.CaptureFixture[str],
) -> None:
    _, out, _ = run(capsys, "ledger", "--json", "--account", SUB_B)
    data = json.loads(out)
    assert data["attempts"] == [], "a subaccount has no top-ups"
    assert [t["account"] for t in data["transfers"]] == [SUB_B]

    _, out, _ = run(capsys, "ledger", "--json", "--account", PRIMARY)
    data = json.loads(out)
    assert [a["attempt_id"] for a in data["attempts"]] == [1, 2, 3]
    assert data["transfers"] == []

    _, out, _ = run(capsys, "ledger", "--account", "nobody00")
    assert out.startswith("no transfers match")

    _, out, _ = run(capsys, "ledger", "--json", "--state", "failed")
    data = json.loads(out)
    assert [a["attempt_id"] for a in data["attempts"]] == [2]
    assert [t["account"] for t in data["transfers"]] == [SUB_B], "settled A stays succeeded"


@pytest.mark.usefixtures("ledger_env")
def test_a_single_account_ledger_shows_exactly_what_it_showed_before(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, _ = run(capsys, "ledger")
    assert code == 0
    assert "transfer" not in out
    assert out.rstrip().endswith("3 shown)")
    _, out, _ = run(capsys, "ledger", "--json")
    assert json.loads(out)["transfers"] == []
