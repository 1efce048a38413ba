"""The fleet trace format and its generator: clear errors, exact round trips, same bytes."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from topup_guard.errors import ConfigError
from topup_guard.fleet import tracegen
from topup_guard.fleet.trace import (
    FleetTraceError,
    format_fleet_trace,
    parse_fleet_trace,
    read_fleet_trace,
)
from topup_guard.sim.scenario import load_scenario, parse_scenario
from topup_guard.sim.server import serve_forever

D = Decimal
COMMITTED = Path(__file__).parents[2] / "bench" / "traces" / "fleet-50.csv"


def parse(text: str) -> dict[str, list[tuple[float, Decimal]]]:
    return parse_fleet_trace(text.splitlines(), source="f.csv")


def test_events_are_grouped_per_account_in_time_order() -> None:
    trace = parse("t,account,amount\n0,primary,0.0075\n1.5,sub00001,0.15\n2,primary,1\n\n")
    assert trace == {"primary": [(0.0, D("0.0075")), (2.0, D(1))], "sub00001": [(1.5, D("0.15"))]}


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("", "f.csv:1: empty: expected the header 't,account,amount'"),
        ("t,spend\n1,2\n", "f.csv:1: the header must be 't,account,amount', not 't,spend'"),
        ("t,account,amount\n", "f.csv: no events"),
        ("t,account,amount\n1,primary\n", "f.csv:2: expected 3 columns 't,account,amount', got 2"),
        ("t,account,amount\n1,a,1,9\n", "f.csv:2: expected 3 columns"),
        ("t,account,amount\nsoon,a,1\n", "f.csv:2: column 1 't': not a number: 'soon'"),
        ("t,account,amount\n-1,a,1\n", "f.csv:2: column 1 't': must be a finite number >= 0"),
        ("t,account,amount\ninf,a,1\n", "f.csv:2: column 1 't': must be a finite number >= 0"),
        ("t,account,amount\n5,a,1\n4,a,1\n", "f.csv:3: column 1 't': 4 goes back in time"),
        ("t,account,amount\n1, ,1\n", "f.csv:2: column 2 'account': must be a subaccount key"),
        ("t,account,amount\n1,a b,1\n", "f.csv:2: column 2 'account'"),
        ("t,account,amount\n1,a,lots\n", "f.csv:2: column 3 'amount': not a number: 'lots'"),
        ("t,account,amount\n1,a,-0.5\n", "f.csv:2: column 3 'amount': must be a finite EUR"),
        ("t,account,amount\n1,a,NaN\n", "f.csv:2: column 3 'amount': must be a finite EUR"),
    ],
)
def test_a_bad_trace_is_refused_naming_the_line_and_the_column(text: str, error: str) -> None:
    with pytest.raises(FleetTraceError) as caught:
        parse(text)
    assert isinstance(caught.value, ConfigError)  # the CLI's exit 2 path handles it
    assert error in str(caught.value)


def test_an_unreadable_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(FleetTraceError, match=r"missing\.csv: cannot read"):
        read_fleet_trace(tmp_path / "missing.csv")


def test_formatting_then_parsing_gives_the_trace_back() -> None:
    trace = tracegen.generate(12, 1200, seed=5).trace
    assert parse(format_fleet_trace(trace)) == trace


def test_the_generator_gives_the_same_bytes_for_the_same_arguments(tmp_path: Path) -> None:
    for run in ("a", "b"):
        (tmp_path / run).mkdir()
        out = tmp_path / run
        tracegen.main(["--subaccounts", "30", "--hours", "0.5", "--out", str(out / "f.csv"),
                       "--scenario-out", str(out / "f.json")])  # fmt: skip
    for name in ("f.csv", "f.json"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    other = format_fleet_trace(tracegen.generate(30, 1800, seed=2).trace)
    assert other != (tmp_path / "a" / "f.csv").read_text()  # and the seed matters


def test_adding_subaccounts_leaves_the_earlier_ones_as_they_were() -> None:
    small, large = tracegen.generate(10, 3600).trace, tracegen.generate(40, 3600).trace
    assert all(large[key] == events for key, events in small.items())


def test_the_mix_has_bursty_steady_and_idle_spend() -> None:
    sample = tracegen.generate(50, 7200)
    kinds = sample.kinds()
    peak = {k: max((e for _, e in sample.trace.get(k, [])), default=D(0)) for k in kinds}
    events = {k: len(sample.trace.get(k, [])) for k in kinds}
    campaigns = [k for k, kind in kinds.items() if kind == "campaign"]
    steady = [k for k, kind in kinds.items() if kind == "steady"]
    idle = [k for k, kind in kinds.items() if kind == "idle"]
    assert (len(campaigns), len(steady), len(idle)) == (15, 25, 10)
    # a campaign's 10-s event outweighs three times any steady 30-s one
    assert min(peak[k] for k in campaigns) > 3 * max(peak[k] for k in steady)
    assert min(events[k] for k in steady) > 200  # something every 30 s, nearly always
    assert max(events[k] for k in idle) < 20  # now and then, or never
    assert [s["api_key"] for s in sample.subaccounts if "balance" not in s] == [
        "sub00025",
        "sub00050",
    ]  # every 25th shares the primary's balance
    assert {s.get("credit_limit") for s in sample.subaccounts} == {None, D(0), D(-10)}


def test_the_committed_50_subaccount_trace_is_the_generators_and_small(tmp_path: Path) -> None:
    assert COMMITTED.stat().st_size < 2_000_000
    trace = read_fleet_trace(COMMITTED)
    assert max(t for events in trace.values() for t, _ in events) <= 7200
    tracegen.main(["--subaccounts", "50", "--hours", "2", "--out", str(tmp_path / "fleet-50.csv"),
                   "--scenario-out", str(tmp_path / "fleet-50.json")])  # fmt: skip
    for name in ("fleet-50.csv", "fleet-50.json"):
        assert (tmp_path / name).read_bytes() == (COMMITTED.parent / name).read_bytes(), name


def test_a_scenario_names_its_fleet_trace_relative_to_itself(tmp_path: Path) -> None:
    (tmp_path / "traces").mkdir()
    tracegen.main(["--subaccounts", "3", "--hours", "0.1", "--out", str(tmp_path / "f.csv"),
                   "--scenario-out", str(tmp_path / "traces" / "s.json")])  # fmt: skip
    scenario = load_scenario(tmp_path / "traces" / "s.json")
    assert scenario.fleet_trace is not None
    assert Path(scenario.fleet_trace).resolve() == (tmp_path / "f.csv").resolve()
    with pytest.raises(ConfigError, match="fleet_trace: must be the path of a fleet trace CSV"):
        parse_scenario(
            '{"initial_balance": 1, "topup_amount": 1, "autoreload_threshold": 1, "fleet_trace": 3}'
        )


def test_simulate_refuses_a_bad_fleet_trace_naming_its_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "bad.csv").write_text("t,account,amount\n1,sub1,1\n0,sub1,1\n")
    (tmp_path / "s.json").write_text(
        '{"initial_balance": 1, "topup_amount": 1, "autoreload_threshold": 1,'
        ' "fleet_trace": "bad.csv"}'
    )
    assert serve_forever(port=0, scenario_path=str(tmp_path / "s.json")) == 2
    assert "bad.csv:3: column 1 't': 0 goes back in time" in capsys.readouterr().err
