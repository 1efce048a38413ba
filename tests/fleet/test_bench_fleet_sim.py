"""``python -m bench.fleet_sim`` stays runnable (``make bench`` runs it at 1,000 subaccounts)."""

from __future__ import annotations

from bench import fleet_sim


def test_the_fleet_bench_measures_every_case_and_renders_its_table() -> None:
    costs = fleet_sim.measure(subaccounts=30, duration_s=600)
    assert [c.case for c in costs] == [
        "primary alone",
        "30 subaccounts without demand",
        "30 subaccounts, fleet trace",
        "30 subaccounts at 1 message/s each",
    ]
    assert costs[2].events > 0
    assert costs[1].refused_eur == 0  # no demand, nothing refused
    assert costs[3].refused_eur > 0  # 1 message/s for 10 minutes outruns the small balances
    assert all(c.advance_us > 0 and c.cycle_us > 0 for c in costs)
    text = fleet_sim.section(costs)
    assert "| list_subaccounts per 10-s cycle (µs)" in text
