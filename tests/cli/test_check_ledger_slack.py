"""``check`` reads the ledger (breaker, caps used), the ledger's path, the trx, and ``--slack``."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path

import pytest

from tests.cli.helpers import Run
from tests.redisproc import RedisServer
from tests.run.slack_receiver import SlackReceiver
from topup_guard.cli.check import ledger_path_problem
from topup_guard.config import DEMO_API_KEY
from topup_guard.ledger.base import AttemptState
from topup_guard.ledger.redis import RedisLedger, redis_client
from topup_guard.ledger.redis_lease import RedisKeys, RedisLease
from topup_guard.ledger.sqlite import SqliteLedger
from topup_guard.sim import RunningSimulator

NOBODY = 65534


async def record(path: Path, *states: AttemptState, ago: float = 600.0) -> None:
    """Attempts that ended in ``states``, ``ago`` seconds back, one a second."""
    ledger = SqliteLedger(path, account=DEMO_API_KEY)
    start = time.time() - ago
    for i, state in enumerate(states):
        wall = start + i
        a = await ledger.begin(
            balance_before=Decimal("9"),
            expected_amount=Decimal("50"),
            reason="below the floor",
            wall=wall,
            epoch=0,
            holder="pod-a",
        )
        await ledger.transition(a.attempt_id, state, wall=wall + 0.5, epoch=0, detail="test")
    await ledger.close()


def state_path() -> Path:
    return Path(os.environ["TOPUP_GUARD_STATE_PATH"])


@pytest.mark.usefixtures("account_env")
async def test_check_says_plainly_that_the_trx_cannot_be_verified_without_spending(
    cli: Run,
) -> None:
    code, out, _ = await cli("check")
    assert code == 0, out
    assert "UNVERIFIED trx: set, but it cannot be verified without spending money" in out
    assert "ledger: none yet at" in out


@pytest.mark.usefixtures("account_env")
async def test_check_reports_a_breaker_the_ledger_shows_open_instead_of_caps_allowing(
    cli: Run,
) -> None:
    await record(state_path(), *[AttemptState.FAILED] * 3)
    code, out, _ = await cli("check")
    assert code == 1
    assert "PROBLEM  breaker: open: the last 3 top-ups failed or went unconfirmed" in out
    assert "no top-up until one trial at " in out
    assert "caps allow topping up" not in out


@pytest.mark.usefixtures("account_env")
async def test_check_reports_caps_the_ledger_shows_used_up(cli: Run) -> None:
    await record(state_path(), *[AttemptState.SUCCEEDED] * 4)  # the hourly cap is 4
    code, out, _ = await cli("check", "--json")
    assert code == 1
    checks = {c["name"]: c for c in json.loads(out)["checks"]}
    assert checks["caps"]["level"] == "problem"
    assert "4 top-ups in the last hour" in checks["caps"]["message"]


@pytest.mark.usefixtures("account_env")
async def test_check_passes_a_ledger_with_old_failures_followed_by_a_success(cli: Run) -> None:
    await record(state_path(), AttemptState.FAILED, AttemptState.FAILED, AttemptState.SUCCEEDED)
    code, out, _ = await cli("check")
    assert code == 0, out
    assert "ok       caps: top-up caps allow topping up" in out
    assert "ok       ledger: 3 attempts in the last day" in out


def test_a_ledger_path_whose_directories_can_be_created_is_fine(tmp_path: Path) -> None:
    assert ledger_path_problem(tmp_path / "a" / "b" / "ledger.db") is None


def test_a_ledger_path_under_a_file_is_a_problem(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    problem = ledger_path_problem(tmp_path / "file" / "sub" / "ledger.db")
    assert problem == f"{tmp_path / 'file'} is a file, so the ledger's directory cannot be created"


@pytest.mark.parametrize("exists", [False, True])
def test_a_ledger_in_a_directory_this_user_cannot_write_is_a_problem(exists: bool) -> None:
    shared = Path(tempfile.mkdtemp(prefix="topup-guard-check-"))
    try:
        if exists:
            (shared / "ledger.db").write_bytes(b"")
            (shared / "ledger.db").chmod(0o666)
        shared.chmod(0o555)
        as_root = os.geteuid() == 0
        if as_root:
            os.seteuid(NOBODY)  # root ignores file modes
        try:
            problem = ledger_path_problem(shared / "ledger.db")
        finally:
            if as_root:
                os.seteuid(0)
        assert problem is not None
        assert f"{shared} is not writable by this user" in problem
    finally:
        shared.chmod(0o755)
        shutil.rmtree(shared, ignore_errors=True)


@pytest.fixture
async def slack() -> AsyncIterator[SlackReceiver]:
    receiver = SlackReceiver()
    await receiver.start()
    yield receiver
    await receiver.stop()


async def test_check_slack_sends_one_test_message_naming_the_account(
    cli: Run,
    account_env: RunningSimulator,
    slack: SlackReceiver,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TOPUP_GUARD_SLACK_WEBHOOK_URL", slack.webhook_url)
    code, out, _ = await cli("check", "--slack")
    assert code == 0, out
    assert "ok       slack: test message sent to the incoming webhook" in out
    (post,) = slack.posts
    assert "test message" in post.text
    assert DEMO_API_KEY in post.text


async def test_check_slack_fails_when_slack_refuses_without_showing_the_url(
    cli: Run,
    account_env: RunningSimulator,
    slack: SlackReceiver,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    wrong = f"http://127.0.0.1:{slack.port}/services/T/B/WrongSecretPart"
    monkeypatch.setenv("TOPUP_GUARD_SLACK_WEBHOOK_URL", wrong)
    code, out, err = await cli("check", "--slack")
    assert code == 1
    assert "PROBLEM  slack: the test message was refused: webhook answered HTTP 404" in out
    assert "WrongSecretPart" not in out + err


@pytest.mark.usefixtures("account_env")
async def test_check_slack_without_slack_configured_is_a_problem(cli: Run) -> None:
    code, out, _ = await cli("check", "--slack")
    assert code == 1
    assert "slack: --slack: Slack is not configured" in out


@pytest.mark.usefixtures("account_env")
async def test_check_says_where_telemetry_goes_and_what_run_would_ignore(
    cli: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://user:Pa55w0rd@collector:4318")
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "zipkin")
    code, out, _ = await cli("check")
    assert code == 0, out
    assert "WARNING  telemetry: OTEL_TRACES_EXPORTER=zipkin is not supported" in out
    assert "ok       telemetry: metrics to http://collector:4318/v1/metrics" in out
    assert "Pa55w0rd" not in out


async def test_check_reads_the_breaker_from_the_shared_ledger_in_redis(
    cli: Run,
    account_env: RunningSimulator,
    redis_server: RedisServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    keys = RedisKeys(DEMO_API_KEY)
    lease_client, ledger_client = (redis_client(redis_server.url, timeout=1.0) for _ in "ab")
    lease = RedisLease(lease_client, keys, ttl=60.0, holder="pod-0")
    await lease.tick()
    ledger = RedisLedger(ledger_client, keys)
    now = time.time()
    for i in range(3):
        a = await ledger.begin(
            balance_before=Decimal("9"),
            expected_amount=Decimal("50"),
            reason="below the floor",
            wall=now - 300 + i,
            epoch=lease.epoch,
            holder=lease.holder,
        )
        await ledger.transition(
            a.attempt_id,
            AttemptState.FAILED,
            wall=now - 299 + i,
            epoch=lease.epoch,
            detail="payment refused",
        )
    await lease.stop()
    await ledger.close()
    await lease_client.aclose()
    monkeypatch.setenv("TOPUP_GUARD_REDIS_URL", redis_server.url)
    code, out, _ = await cli("check")
    assert code == 1
    assert "PROBLEM  breaker: open: the last 3 top-ups failed" in out
    assert "caps allow topping up" not in out


@pytest.mark.usefixtures("account_env")
async def test_check_refuses_another_accounts_ledger_as_run_does(cli: Run) -> None:
    other = SqliteLedger(state_path(), account="other999")
    await other.close()
    code, out, _ = await cli("check")
    assert code == 1
    assert f"PROBLEM  ledger: {state_path()} belongs to account other999, not {DEMO_API_KEY}" in out


@pytest.mark.usefixtures("account_env")
async def test_check_reports_a_damaged_ledger_file(cli: Run) -> None:
    state_path().write_bytes(b"this is not a database" * 100)
    code, out, _ = await cli("check")
    assert code == 1
    assert "PROBLEM  ledger: " in out
    assert "cannot be read" in out
