"""``python -m bench`` stays runnable: its backtest table on a short trace (the bench itself is not
part of ``make test``; ``make bench`` runs it)."""

from __future__ import annotations

import re
from decimal import Decimal
from pathlib import Path

from bench.backtests import backtest_table, peak_spend
from bench.report import backtest_section
from tests.backtest.helpers import steady_rows, write_scenario, write_trace


def test_bench_backtest_table_judges_every_goal(tmp_path: Path) -> None:
    trace = write_trace(tmp_path, steady_rows(seconds=1800), name="short.csv")
    result = backtest_table(trace, write_scenario(tmp_path))
    assert result.name == "short"
    assert len(result.goals) == 6
    assert [g.verdict for g in result.goals] == ["PASS"] * 6, result.goals
    assert [r.value for r in result.frontier] == ["10", "30", "60"]
    assert result.signal is not None
    assert result.feasibility.fits
    text = backtest_section(result)
    assert re.search(r"\| failed_spend \(EUR\) +\| 0\.00", text)
    assert "| poll_interval 60 s" in text
    assert "| signal on, poll_interval 300 s" in text
    assert "Feasibility: peak spend in any 4.3 s" in text  # poll_min 2 + latency 2.3
    assert "Polling bound:" in text


def test_peak_spend_is_the_largest_total_in_any_window() -> None:
    events = [(0.0, Decimal(1)), (1.0, Decimal(2)), (5.0, Decimal(4)), (6.0, Decimal(1))]
    assert peak_spend(events, 2.0) == Decimal(5)  # t=5 and t=6
    assert peak_spend(events, 5.0) == Decimal(6)  # [1, 6): 2 + 4
    assert peak_spend(events, 6.0) == Decimal(7)  # [1, 7): 2 + 4 + 1
    assert peak_spend(events, 7.0) == Decimal(8)


def test_the_footprint_verdict_takes_the_median_slice_and_shows_the_instruction_count() -> None:
    from bench.footprint import Footprint
    from bench.report import footprint_section

    fp = Footprint(
        idle_s=300,
        rss_mb=48.3,
        peak_rss_mb=48.3,
        cpu_window_s=30,
        polls=60,
        cpu_ms_per_poll=1.9,  # one neighbour's burst lifts the mean ...
        cpu_slices_ms=[0.8, 0.9, 6.0, 0.9, 0.95],  # ... and one slice, not the median
        ready_runs=[0.3, 0.28, 0.27],
        instructions_per_poll=1_200_000,
    )

    rows = {line.split("|")[1].strip(): line for line in footprint_section(fp).splitlines()[2:]}
    cpu = next(line for name, line in rows.items() if name.startswith("CPU per poll"))
    assert "0.90 ms (mean 1.90)" in cpu
    assert cpu.rstrip(" |").endswith("PASS")
    assert any("1.20 M" in line for line in rows.values())
    assert all(line.rstrip(" |").endswith("PASS") for name, line in rows.items() if "RSS" in name)


def test_held_out_traces_are_deterministic_and_judged_with_the_bench_goals() -> None:
    from bench import heldout

    scenario, events = heldout.generate("batches", 3)
    again, events_again = heldout.generate("batches", 3)
    assert (scenario, events) == (again, events_again)
    assert heldout.generate("batches", 4)[1] != events  # another seed, another trace
    assert len(events) == heldout.HOURS6
    assert scenario.topup_amount in (20, 50, 100)
    caps = scenario.guard or {}
    assert int(caps["max_topups_per_hour"]) >= 4
    assert Decimal(caps["max_daily_amount"]) >= 1000
    (judged,) = heldout.judge(["steady"], 1, lambda _: None)
    assert len(judged.result.goals) == 6
    assert set(judged.seen_in_time) == {"60 s", "10 s", "signal"}
    assert set(judged.failed()) <= set(judged.expected())
    text = heldout.section([judged], 1)
    assert "| steady | 1 |" in text
    assert "Goals passed:" in text


def test_a_burst_beyond_what_can_be_in_hand_is_not_expected_of_polling() -> None:
    from bench import heldout

    scenario, _ = heldout.generate("steady", 0)
    # 200 EUR in one second: no guard polling at 60 or 10 s can have that in hand unwarned.
    flash = [(float(t), Decimal("200") if t == 3000 else Decimal("0.01")) for t in range(6000)]
    seen = heldout.seen_in_time(scenario, flash)
    assert seen == {"60 s": False, "10 s": False, "signal": False}
    calm = [(float(t), Decimal("0.01")) for t in range(6000)]
    assert heldout.seen_in_time(scenario, calm) == {"60 s": True, "10 s": True, "signal": True}
