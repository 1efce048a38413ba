"""``topup-guard backtest``: the table, one JSON object, one clear line (exit 2) per bad input."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.backtest.helpers import steady_rows, write_scenario, write_trace
from topup_guard.cli import main

METRICS = {
    "failed_spend",
    "failed_events",
    "exhausted_seconds",
    "topups",
    "autoreloads",
    "api_calls",
    "mean_balance",
}


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(["backtest", *argv])
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, Path]:
    """A 20-minute steady trace and the scenario Vonage's auto-reload cannot keep up with."""
    return write_trace(tmp_path, steady_rows(seconds=1200)), write_scenario(tmp_path)


def test_prints_a_table_of_every_policy(
    files: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    trace, scenario = files
    code, out, err = run(capsys, "--trace", str(trace), "--scenario", str(scenario))
    assert (code, err) == (0, "")
    table, notes = out.split("\n\n")
    header, *rows = table.splitlines()
    assert header.split() == ["guard", "autoreload_only", "threshold_poller"]
    assert notes.startswith("What bound each policy:\n- guard: ")
    labels = [row.split("  ")[0] for row in rows[:-1]]
    assert labels == [
        "failed_spend (EUR)",
        "failed_events",
        "exhausted_seconds",
        "topups",
        "autoreloads",
        "api_calls",
        "api_calls per hour",
        "mean_balance (EUR)",
        "peak_balance (EUR)",
        "credits (all charges)",
    ]
    assert rows[-1].startswith("trace: 600 events over 0.33 h, total_spend 60.00 EUR")


def test_json_prints_exactly_one_object_with_every_metric(
    files: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    trace, scenario = files
    code, out, _ = run(capsys, "--trace", str(trace), "--scenario", str(scenario), "--json")
    assert code == 0
    assert len(out.strip().splitlines()) == 1
    report = json.loads(out)
    assert set(report["policies"]) == {"guard", "autoreload_only", "threshold_poller"}
    for name, metrics in report["policies"].items():
        assert set(metrics) >= METRICS, name
    assert report["min_topups"] == 1  # 60 EUR of demand against 50 EUR, top-ups of 50
    assert report["total_spend"] == pytest.approx(60.0)
    assert report["events"] == 600


def test_set_poll_min_changes_how_often_the_guard_polls(
    files: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    trace, scenario = files
    base = ["--trace", str(trace), "--scenario", str(scenario), "--json"]
    calls = {}
    for poll_min in ("5", "30"):
        code, out, _ = run(capsys, *base, "--set", f"poll_min={poll_min}")
        assert code == 0
        calls[poll_min] = json.loads(out)["policies"]["guard"]["api_calls"]
    assert calls["30"] < calls["5"]


def test_scenario_guard_object_sets_the_guard_policy(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    trace = write_trace(tmp_path, steady_rows(seconds=1200))
    fast = write_scenario(tmp_path, "fast.json", guard={"poll_min": 5})
    slow = write_scenario(tmp_path, "slow.json", guard={"poll_min": 30})
    calls = []
    for scenario in (fast, slow):
        code, out, _ = run(capsys, "--trace", str(trace), "--scenario", str(scenario), "--json")
        assert code == 0
        calls.append(json.loads(out)["policies"]["guard"]["api_calls"])
    assert calls[1] < calls[0]


@pytest.mark.parametrize(
    ("rows", "expected"),
    [
        (["t,spend", "0,1", "5,1", "3,1"], "trace.csv:4: t=3 goes back in time"),
        (["t,spend", "0,1", "1,-2"], "trace.csv:3: spend must be >= 0"),
        (["time,amount", "0,1"], "trace.csv:1: the header must be 't,spend'"),
        (["0,1", "1,1"], "trace.csv:1: the header must be 't,spend'"),
        (["t,spend", "0,1", "7"], "trace.csv:3: expected 't,spend'"),
        (["t,spend", "0,abc"], "trace.csv:2: not numbers"),
        (["t,spend", "x,1"], "trace.csv:2: not numbers"),
        (["t,spend", "nan,1"], "trace.csv:2: t must be a finite number >= 0"),
        (["t,spend"], "trace.csv: no events"),
        ([""], "trace.csv:1: empty"),
    ],
)
def test_bad_trace_exits_2_naming_the_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], rows: list[str], expected: str
) -> None:
    trace, scenario = write_trace(tmp_path, rows), write_scenario(tmp_path)
    code, out, err = run(capsys, "--trace", str(trace), "--scenario", str(scenario))
    assert code == 2
    assert out == ""
    assert len(err.splitlines()) == 1
    assert expected in err
    assert "Traceback" not in err


def test_missing_trace_file_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    scenario = write_scenario(tmp_path)
    code, _, err = run(capsys, "--trace", str(tmp_path / "nope.csv"), "--scenario", str(scenario))
    assert code == 2
    assert "nope.csv: cannot read" in err


@pytest.mark.parametrize(
    ("scenario_changes", "argv", "expected"),
    [
        ({"topup_amout": 3}, [], "scenario.json: unknown key 'topup_amout'"),
        ({"guard": {"pol_min": 3}}, [], "scenario guard: unknown guard setting 'pol_min'"),
        ({"guard": {"trx": "x"}}, [], "scenario guard: unknown guard setting 'trx'"),
        ({}, ["--set", "pol_min=3"], "--set: unknown guard setting 'pol_min'"),
        ({}, ["--set", "api_secret=x"], "--set: unknown guard setting 'api_secret'"),
        ({}, ["--set", "poll_min"], "--set 'poll_min': expected KEY=VALUE"),
        ({}, ["--set", "=5"], "--set '=5': expected KEY=VALUE"),
        ({}, ["--set", "poll_min=abc"], "guard setting poll_min: must be a number, not 'abc'"),
        ({}, ["--set", "poll_min=0.1"], "guard setting poll_min: must be at least 0.5, not '0.1'"),
    ],
)
def test_bad_scenario_or_setting_exits_2_naming_the_key(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    scenario_changes: dict[str, Any],
    argv: list[str],
    expected: str,
) -> None:
    trace = write_trace(tmp_path, steady_rows(seconds=60))
    scenario = write_scenario(tmp_path, **scenario_changes)
    code, out, err = run(capsys, "--trace", str(trace), "--scenario", str(scenario), *argv)
    assert code == 2
    assert out == ""
    assert len(err.splitlines()) == 1
    assert expected in err
    assert "TOPUP_GUARD_" not in err  # the user wrote setting names, not environment variables
