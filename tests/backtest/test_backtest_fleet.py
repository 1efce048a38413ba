"""The fleet backtest: the real fleet guard over the in-process simulator, per account and total."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from topup_guard.backtest import guard_settings
from topup_guard.backtest_fleet import backtest_fleet, render_fleet
from topup_guard.cli import main
from topup_guard.fleet.rules import load_fleet_file
from topup_guard.fleet.trace import read_fleet_trace
from topup_guard.sim.scenario import load_scenario

TRACES = Path(__file__).parents[2] / "bench" / "traces"


@pytest.fixture(scope="module")
def report():  # type: ignore[no-untyped-def]
    scenario = load_scenario(TRACES / "fleet-50.json")
    assert scenario.fleet_trace is not None
    trace = read_fleet_trace(scenario.fleet_trace)
    settings = guard_settings(scenario, {"poll_interval": "60", "poll_min": "2"})
    return backtest_fleet(scenario, trace, settings, load_fleet_file(TRACES / "fleet-50.toml"))


def test_the_fleet_guard_keeps_subaccounts_sending_where_the_primary_alone_cannot(report) -> None:  # type: ignore[no-untyped-def]
    guard, alone = report.policies["fleet_guard"], report.policies["autoreload_only"]
    assert alone.refused_spend > 1000  # without transfers the campaigns run dry
    assert guard.refused_spend <= alone.refused_spend / 100
    assert guard.accounts_refused <= 2  # at most a first burst of its kind, a few EUR
    assert guard.primary_failed_spend == 0


def test_one_list_call_reads_every_balance_and_get_balance_is_never_called(report) -> None:  # type: ignore[no-untyped-def]
    guard = report.policies["fleet_guard"]
    others = guard.api_calls - guard.list_calls - guard.transfers - guard.topups
    assert others >= 0
    # Besides the list calls, transfers and top-ups, only transfer listings after doubt may
    # come: none in a run without faults.
    assert others == 0
    assert guard.list_calls / (report.duration_s / 3600) <= 360  # the cadence's bound: 10 s


def test_the_report_names_the_subaccounts_that_refused_most(report) -> None:  # type: ignore[no-untyped-def]
    text = render_fleet(report)
    assert "fleet_guard" in text
    assert "autoreload_only" in text
    worst = max(report.policies["autoreload_only"].accounts.items(),
                key=lambda kv: kv[1].refused_spend)[0]  # fmt: skip
    assert worst in text


def test_the_cli_replays_a_fleet_from_its_scenario(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["backtest", "--scenario", str(TRACES / "fleet-50.json"),
                 "--fleet-file", str(TRACES / "fleet-50.toml"), "--json"])  # fmt: skip
    assert code == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["subaccounts"] == 50
    assert set(doc["policies"]) == {"fleet_guard", "autoreload_only"}
    assert "sub00031" in doc["policies"]["fleet_guard"]["accounts"]


def test_a_single_account_backtest_without_a_trace_names_the_flag(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    scenario = tmp_path / "s.json"
    scenario.write_text('{"initial_balance": 10, "topup_amount": 10, "autoreload_threshold": 5}',
                        encoding="utf-8")  # fmt: skip
    assert main(["backtest", "--scenario", str(scenario)]) == 2
    assert "--trace" in capsys.readouterr().err


def test_the_primary_never_takes_the_guards_own_transfers_for_one_off_debits(
    caplog: pytest.LogCaptureFixture,
) -> None:
    scenario = load_scenario(TRACES / "fleet-50.json")
    assert scenario.fleet_trace is not None
    trace = read_fleet_trace(scenario.fleet_trace)
    # A short poll puts transfers at the very instant of the primary's reading (float time).
    settings = guard_settings(scenario, {"poll_interval": "10", "poll_min": "2"})
    with caplog.at_level("INFO", logger="topup_guard.engine"):
        report = backtest_fleet(
            scenario, trace, settings, load_fleet_file(TRACES / "fleet-50.toml")
        )
    assert report.policies["fleet_guard"].transfers > 100
    lumps = [r for r in caplog.records if r.getMessage() == "one_off_debit"]
    assert lumps == []
