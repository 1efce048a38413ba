"""Fleet log lines name the account: each transfer outcome at its level, as JSON with the key,
the name and the reference; the cycle at debug level only."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator
from decimal import Decimal

import pytest

from topup_guard.events import FleetCycle, TransferFinished
from topup_guard.logs import LogSink, setup_logging

from .test_logs import lines


@pytest.fixture
def root_logger() -> Iterator[logging.Logger]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield root
    root.handlers[:] = handlers
    root.setLevel(level)


def finished(state: str, tid: int = 1) -> TransferFinished:
    return TransferFinished(wall=1_800_000_000.0, account="sub00007", name="Acme Dental",
                            transfer_id=tid, state=state, amount=Decimal("10.00"),
                            reference=f"tg-3f9a1c02de-{tid}", detail="what happened",
                            settled_late=state == "succeeded")  # fmt: skip


def test_every_transfer_outcome_is_one_json_line_naming_its_account(
    root_logger: logging.Logger,
) -> None:
    stream = io.StringIO()
    setup_logging("json", "INFO", stream=stream)
    sink = LogSink()
    for tid, state in enumerate(("succeeded", "failed", "unknown", "unconfirmed"), start=1):
        sink.emit(finished(state, tid))
    sink.emit(FleetCycle(wall=1.0, balances={"prim0001": Decimal(1), "sub00007": Decimal(2)}))

    got = lines(stream)
    assert [(r["event"], r["level"]) for r in got] == [
        ("transfer_succeeded", "info"),
        ("transfer_failed", "warning"),
        ("transfer_unknown", "warning"),
        ("transfer_unconfirmed", "error"),
    ], "and no fleet_cycle line above debug"
    for record in got:
        assert record["account"] == "sub00007"
        assert record["account_name"] == "Acme Dental"
        assert record["amount"] == "10.00"
        assert record["reference"].startswith("tg-3f9a1c02de-")
    assert got[0]["settled_late"] is True


def test_the_fleet_cycle_is_logged_at_debug_with_its_figures(root_logger: logging.Logger) -> None:
    stream = io.StringIO()
    setup_logging("json", "DEBUG", stream=stream)
    LogSink().emit(FleetCycle(wall=1.0, balances={"prim0001": Decimal(1), "sub00007": Decimal(2)},
                              transfers=1, list_calls=7, duration_s=0.01234))  # fmt: skip
    (record,) = lines(stream)
    assert record["event"] == "fleet_cycle"
    assert (record["accounts"], record["transfers"], record["list_calls"]) == (2, 1, 7)
