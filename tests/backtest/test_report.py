"""``backtest --report``: the replay behind the picture, the notes under the table, the files."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from tests.backtest.helpers import scenario, steady_rows, trace, write_scenario, write_trace
from topup_guard.backtest import backtest
from topup_guard.cli import main
from topup_guard.replay import replay

PACKAGE = Path(__file__).resolve().parents[2] / "topup_guard"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(["backtest", *argv])
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.mark.parametrize("overrides", [{}, {"max_topups_per_hour": "1"}])
def test_the_replay_behind_the_picture_adds_up_to_the_backtest_table(
    overrides: dict[str, str],
) -> None:
    sc, events = scenario(), trace(steady_rows(seconds=2400))
    report = backtest(sc, events, overrides)
    runs = replay(sc, events, overrides)
    for name, result in report.policies.items():
        run = runs[name]
        assert run.failed_spend == result.failed_spend, name
        assert len(run.topups) == result.topups, name
        assert len(run.autoreloads) == result.autoreloads, name
        assert run.api_calls == result.api_calls, name
        assert sum(e for _, e in run.refused) == result.failed_spend, name
        assert len(run.times) == len(run.balances) == int((events[-1][0] + 1) // 5)


def test_the_notes_say_the_caps_bound_the_guard_when_it_loses_to_the_naive_poller(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    files = [str(write_trace(tmp_path, steady_rows(seconds=3600))), str(write_scenario(tmp_path))]
    code, out, _ = run(capsys, "--trace", files[0], "--scenario", files[1],
                       "--set", "max_topups_per_hour=1")  # fmt: skip
    assert code == 0
    assert "- the guard LOST to the naive poller (" in out
    assert "its top-ups were blocked by caps in " in out
    assert "max_topups_per_hour" in out


def test_the_notes_flag_api_calls_over_the_budget_and_print_the_feasibility_bound(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    files = [str(write_trace(tmp_path, steady_rows(seconds=1800))), str(write_scenario(tmp_path))]
    code, out, _ = run(capsys, "--trace", files[0], "--scenario", files[1], "--json",
                       "--set", "poll_interval=5")  # fmt: skip
    assert code == 0
    notes = json.loads(out)["notes"]
    assert any(n.startswith("OVER BUDGET: guard made ") and "more than 180/h" in n for n in notes)
    (feasible,) = [n for n in notes if n.startswith("feasibility: ")]
    assert "a top-up decided at a poll lands in time" in feasible


def test_an_impossible_burst_is_called_infeasible(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = ["t,spend", *[f"{t},30" for t in range(100, 106)]]  # 180 EUR in 6 s
    files = [str(write_trace(tmp_path, rows)), str(write_scenario(tmp_path))]
    code, out, _ = run(capsys, "--trace", files[0], "--scenario", files[1])
    assert code == 0
    assert "INFEASIBLE: the trace drains the buffer faster than any top-up can land" in out


@pytest.fixture
def files(tmp_path: Path) -> list[str]:
    return [
        "--trace", str(write_trace(tmp_path, steady_rows(seconds=3600))),
        "--scenario", str(write_scenario(tmp_path)),
        "--set", "max_topups_per_hour=1",
    ]  # fmt: skip


def test_report_png_is_a_picture(
    files: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "report.png"
    code, _, err = run(capsys, *files, "--report", str(target))
    assert code == 0
    assert f"report written to {target}" in err
    assert target.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert target.stat().st_size > 20_000  # three panels, not an empty canvas


def test_report_svg_draws_each_policy_with_its_marks(
    files: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "report.svg"
    assert run(capsys, *files, "--report", str(target))[0] == 0
    text = target.read_text()
    ET.fromstring(text)  # well-formed
    for label in ("topup-guard: ", "Vonage auto-reload alone: ", "naive poller",
                  "floor", "demand refused", "top-up (", "Vonage auto-reload ("):  # fmt: skip
        assert label in text, label


def test_report_html_holds_the_figure_the_table_and_the_notes(
    files: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "report.html"
    assert run(capsys, *files, "--report", str(target))[0] == 0
    page = target.read_text()
    assert page.startswith("<!doctype html>")
    assert "<svg" in page
    assert "failed_spend (EUR)" in page
    assert "the guard LOST to the naive poller" in page


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("report.pdf", "the file name must end in .html, .png, .svg"),
        ("missing-dir/report.png", "does not exist"),
    ],
)
def test_a_bad_report_path_exits_2_before_the_replay(
    files: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str, message: str
) -> None:
    code, out, err = run(capsys, *files, "--report", str(tmp_path / name))
    assert (code, out) == (2, "")
    assert message in err


def test_only_the_report_module_imports_matplotlib() -> None:
    importers = []
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = (
                [a.name for a in node.names] if isinstance(node, ast.Import)
                else [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            )  # fmt: skip
            if any(n.split(".")[0] == "matplotlib" for n in names):
                importers.append(path.name)
    assert set(importers) == {"report.py"}


def test_run_and_the_cli_never_load_matplotlib() -> None:
    code = (
        "import sys, topup_guard.app, topup_guard.cli, topup_guard.cli.worker;"
        "topup_guard.cli.build_parser();"
        "sys.exit('matplotlib' in sys.modules or 'numpy' in sys.modules)"
    )
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
