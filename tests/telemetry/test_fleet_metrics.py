"""Fleet mode's series: ``account`` bounded by what the fleet cycles report, counters from 0 per
new account, transfers counted by state, rendered as Prometheus would scrape them."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal

import pytest

from topup_guard.events import FleetCycle, TransferFinished
from topup_guard.metrics import TRANSFER_STATES
from topup_guard.telemetry import Telemetry, setup_telemetry

from .test_metric_series import label_values, samples

PRIMARY = "prim0001"


@pytest.fixture
def tel() -> Iterator[Telemetry]:
    telemetry = setup_telemetry(environ={})
    yield telemetry
    telemetry.shutdown(timeout=2.0)


def cycle(list_calls: int, **balances: str) -> FleetCycle:
    return FleetCycle(wall=1_800_000_000.0, balances={k: Decimal(v) for k, v in balances.items()},
                      list_calls=list_calls)  # fmt: skip


def transfer(account: str, state: str, amount: str = "10", tid: int = 1) -> TransferFinished:
    return TransferFinished(wall=1_800_000_000.0, account=account, name=f"Customer {account}",
                            transfer_id=tid, state=state, amount=Decimal(amount),
                            reference=f"tg-abc-{tid}", detail="", settled_late=False)  # fmt: skip


def test_each_reported_account_has_a_balance_and_counters_from_zero(tel: Telemetry) -> None:
    tel.sink.emit(cycle(1, **{PRIMARY: "120.5", "sub00001": "3.25", "sub00002": "40"}))
    got = samples(tel.render_prometheus())
    assert got[f'topup_guard_account_balance_eur{{account="{PRIMARY}"}}'] == 120.5
    assert got['topup_guard_account_balance_eur{account="sub00001"}'] == 3.25
    for key in (PRIMARY, "sub00001", "sub00002"):
        for state in TRANSFER_STATES:
            assert got[f'topup_guard_transfers_total{{account="{key}",state="{state}"}}'] == 0
        assert got[f'topup_guard_transferred_eur_total{{account="{key}"}}'] == 0
    assert got["topup_guard_fleet_list_calls_total"] == 1


def test_transfers_are_counted_by_account_and_state_and_only_applied_ones_move_eur(
    tel: Telemetry,
) -> None:
    tel.sink.emit(cycle(1, **{PRIMARY: "100", "sub00001": "1", "sub00002": "2"}))
    tel.sink.emit(transfer("sub00001", "succeeded", "10", tid=1))
    tel.sink.emit(transfer("sub00001", "succeeded", "20", tid=2))
    tel.sink.emit(transfer("sub00002", "unknown", "10", tid=3))
    tel.sink.emit(transfer("sub00002", "failed", "10", tid=3))
    tel.sink.emit(cycle(4, **{PRIMARY: "70", "sub00001": "31", "sub00002": "2"}))
    got = samples(tel.render_prometheus())
    assert got['topup_guard_transfers_total{account="sub00001",state="succeeded"}'] == 2
    assert got['topup_guard_transfers_total{account="sub00002",state="unknown"}'] == 1
    assert got['topup_guard_transfers_total{account="sub00002",state="failed"}'] == 1
    assert got['topup_guard_transfers_total{account="sub00002",state="succeeded"}'] == 0
    assert got['topup_guard_transferred_eur_total{account="sub00001"}'] == 30
    assert got['topup_guard_transferred_eur_total{account="sub00002"}'] == 0
    assert got["topup_guard_fleet_list_calls_total"] == 4
    assert got['topup_guard_account_balance_eur{account="sub00001"}'] == 31


def test_the_account_label_only_takes_keys_a_fleet_cycle_reported(tel: Telemetry) -> None:
    # A transfer settled at start-up, before any cycle: held until a cycle reports its key.
    tel.sink.emit(transfer("sub00009", "succeeded", "10"))
    tel.sink.emit(transfer("not a key, free text", "failed"))
    text = tel.render_prometheus()
    assert label_values(text, "topup_guard_transfers_total", "account") == set()
    tel.sink.emit(cycle(1, **{PRIMARY: "100", "sub00009": "11"}))
    text = tel.render_prometheus()
    got = samples(text)
    assert got['topup_guard_transfers_total{account="sub00009",state="succeeded"}'] == 1
    assert got['topup_guard_transferred_eur_total{account="sub00009"}'] == 10
    for metric in ("topup_guard_transfers_total", "topup_guard_transferred_eur_total",
                   "topup_guard_account_balance_eur"):  # fmt: skip
        assert label_values(text, metric, "account") == {PRIMARY, "sub00009"}, metric


def test_a_subaccount_that_disappears_stops_being_reported(tel: Telemetry) -> None:
    tel.sink.emit(cycle(1, **{PRIMARY: "100", "sub00001": "5", "sub00002": "6"}))
    tel.sink.emit(cycle(2, **{PRIMARY: "100", "sub00002": "6"}))  # sub00001 deleted at Vonage
    text = tel.render_prometheus()
    assert label_values(text, "topup_guard_account_balance_eur", "account") == {
        PRIMARY, "sub00002"
    }  # fmt: skip
    tel.sink.emit(cycle(3, **{PRIMARY: "100", "sub00001": "5", "sub00002": "6"}))  # it is back
    text = tel.render_prometheus()
    got = samples(text)
    assert got['topup_guard_account_balance_eur{account="sub00001"}'] == 5
    assert got['topup_guard_transfers_total{account="sub00001",state="succeeded"}'] == 0


def test_a_thousand_subaccounts_make_a_bounded_number_of_series(tel: Telemetry) -> None:
    keys = {f"s{i:07d}": "10" for i in range(1000)}
    for n in range(1, 4):
        tel.sink.emit(cycle(n, **{PRIMARY: "100", **keys}))
    text = tel.render_prometheus()
    accounts = label_values(text, "topup_guard_account_balance_eur", "account")
    assert len(accounts) == 1001
    per_account = 1 + len(TRANSFER_STATES) + 1  # balance, transfers by state, transferred
    fleet_lines = [line for line in text.splitlines() if 'account="' in line]
    assert len(fleet_lines) == 1001 * per_account
