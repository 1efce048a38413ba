"""Fleet mode at scale: ``topup-guard run`` with a fleet file against a simulated primary with
1,000 subaccounts (``python -m bench --fleet``; ``python -m bench.fleet`` alone).

Measured on real processes over real HTTP, as ``bench/footprint.py`` measures the single account:
- CPU per cycle: CPU time of every thread of the guard over a stretch of cycles, divided by the
  subaccount list calls the simulator answered (one per cycle), median of ~5 s slices
  (goal: <= 50 ms — the list call's JSON for 1,000 accounts, 1,000 observations and decisions);
- RSS growth: the fleet guard's highest RSS over the stretch minus a single-account guard's RSS
  30 s after its first top-up, both with the sender-signal server off (goal: <= 20 MB). Like for
  like: a fleet guard loads aiohttp at its first transfer, a single-account guard at its first
  top-up (one that only polls never does, and is shown too). The spend windows fill over an
  hour: ``--window 3900`` measures the steady state (README);
- calls: list calls per cycle (the guard's own count in ``/status`` against the simulator's),
  and ``get-balance`` calls (none: the list call reads the primary too).
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import statistics
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from bench.footprint import (
    CLI,
    _clean_env,
    cpu_seconds,
    free_port,
    get,
    guard,
    rss_after_first_topup,
    rss_mb,
    stop,
    wait_for,
)

CYCLE_GOAL_MS = 50.0
RSS_GROWTH_GOAL_MB = 20.0
SLICE_S = 5.0


@dataclass(frozen=True, slots=True)
class FleetFigures:
    subaccounts: int
    cycles: int
    cpu_ms_per_cycle: float  # median slice
    cpu_slices_ms: list[float]
    single_rss_mb: float  # after its first top-up: the same libraries loaded as the fleet's
    single_polling_rss_mb: float  # one that has only polled (aiohttp never loaded)
    fleet_rss_mb: float
    list_calls_sim: int
    list_calls_guard: int
    balance_calls: int
    transfers: int
    rss_curve: list[tuple[float, float]]  # (seconds into the window, fleet RSS MB)

    @property
    def rss_growth_mb(self) -> float:
        return self.fleet_rss_mb - self.single_rss_mb

    def verdicts(self) -> list[tuple[str, str, bool]]:
        return [
            (
                f"CPU per cycle ({self.subaccounts} subaccounts)",
                f"{self.cpu_ms_per_cycle:.1f} ms (goal <= {CYCLE_GOAL_MS:.0f})",
                self.cpu_ms_per_cycle <= CYCLE_GOAL_MS,
            ),
            (
                "RSS growth over the single-account worker",
                f"{self.rss_growth_mb:+.1f} MB ({self.fleet_rss_mb:.1f} vs "
                f"{self.single_rss_mb:.1f} after its first top-up; "
                f"{self.fleet_rss_mb - self.single_polling_rss_mb:+.1f} MB over one that has "
                f"only polled, {self.single_polling_rss_mb:.1f}; goal <= "
                f"{RSS_GROWTH_GOAL_MB:.0f})",
                self.rss_growth_mb <= RSS_GROWTH_GOAL_MB,
            ),
            (
                "list calls per cycle",
                f"{self.list_calls_sim} answered for {self.list_calls_guard} cycles, "
                f"{self.balance_calls} get-balance",
                self.list_calls_sim <= self.list_calls_guard + 1 and self.balance_calls == 0,
            ),
        ]


def fleet_scenario(subaccounts: int) -> dict[str, object]:
    """A primary with ``subaccounts`` own-balance subaccounts: one in ten spends steadily,
    one in fifty starts low (it needs a transfer at once), the rest are idle."""
    subs = []
    for i in range(subaccounts):
        sub: dict[str, object] = {"api_key": f"sub{i:05d}", "name": f"customer-{i}",
                                  "balance": 40}  # fmt: skip
        if i % 10 == 0:
            sub["spend_rate"] = 0.002 + 0.0001 * (i % 7)
        if i % 50 == 0:
            sub["balance"] = 2
        subs.append(sub)
    return {
        "initial_balance": 5000,
        "topup_amount": 500,
        "autoreload_threshold": 10,
        "topup_latency_s": 0,
        "balance_latency_s": 0,
        "subaccounts": subs,
    }


@contextlib.contextmanager
def fleet_simulator(workdir: Path, subaccounts: int) -> Iterator[str]:
    scenario = workdir / "fleet.json"
    scenario.write_text(json.dumps(fleet_scenario(subaccounts)), encoding="utf-8")
    port = free_port()
    proc = subprocess.Popen(
        [*CLI, "simulate", "--port", str(port), "--scenario", str(scenario)],
        env=_clean_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(f"{url}/_sim/faults", timeout=60, proc=proc)  # /_sim/state is slow at 1,000
        yield url
    finally:
        stop(proc)


def _calls(sim_url: str) -> dict[str, int]:
    _, body = get(f"{sim_url}/_sim/state", timeout=10)
    state = json.loads(body)
    return {ep: sum(int(n) for n in by.values()) for ep, by in state["calls"].items()} | {
        "_transfers": int(state.get("transfers", 0))
    }


def _guard_cycles(health_port: int) -> int:
    _, body = get(f"http://127.0.0.1:{health_port}/status", timeout=10)
    return int(json.loads(body)["fleet"]["list_calls"])


def measure(
    subaccounts: int = 1000, window_s: float = 30.0, warmup_s: float = 10.0
) -> FleetFigures:
    with tempfile.TemporaryDirectory(prefix="topup-guard-fleet-") as tmp:
        work = Path(tmp)
        fleet_file = work / "fleet.toml"
        fleet_file.write_text(
            "[fleet]\nmax_transfers_per_hour = 5000\nmax_daily_amount = 100000\n"
            "[defaults]\nfloor = 5\ntransfer_amount = 10\n",
            encoding="utf-8",
        )
        fast = {"poll_interval": "2", "poll_min": "1", "signal_port": "0"}
        with fleet_simulator(work, subaccounts) as sim:
            with guard(sim, work, free_port(), **fast) as (single, _):
                time.sleep(warmup_s)
                polling_rss = rss_mb(single.pid)
            spent = rss_after_first_topup(work, signal_port="0")
            single_rss = spent if spent is not None else float("nan")
            health = free_port()
            before = _calls(sim)
            with guard(sim, work, health, fleet_file=str(fleet_file), **fast) as (proc, _):
                time.sleep(warmup_s)  # past start-up and the first round of transfers
                marks = [(cpu_seconds(proc.pid), _calls(sim).get("subaccounts", 0))]
                slices = max(1, round(window_s / SLICE_S))
                curve: list[tuple[float, float]] = []
                for i in range(slices):
                    time.sleep(window_s / slices)
                    marks.append((cpu_seconds(proc.pid), _calls(sim).get("subaccounts", 0)))
                    curve.append((round((i + 1) * window_s / slices, 1), rss_mb(proc.pid)))
                fleet_rss = max(rss for _, rss in curve)  # the worst of the stretch
                guard_cycles = _guard_cycles(health)
                after = _calls(sim)
        per_cycle = [
            (c1 - c0) * 1000 / (n1 - n0)
            for (c0, n0), (c1, n1) in itertools.pairwise(marks)
            if n1 > n0
        ]
        return FleetFigures(
            subaccounts=subaccounts,
            cycles=marks[-1][1] - marks[0][1],
            cpu_ms_per_cycle=statistics.median(per_cycle) if per_cycle else float("inf"),
            cpu_slices_ms=[round(s, 2) for s in per_cycle],
            single_rss_mb=single_rss,
            single_polling_rss_mb=polling_rss,
            fleet_rss_mb=fleet_rss,
            list_calls_sim=after.get("subaccounts", 0) - before.get("subaccounts", 0),
            list_calls_guard=guard_cycles,
            balance_calls=after.get("get-balance", 0) - before.get("get-balance", 0),
            transfers=after["_transfers"] - before["_transfers"],
            rss_curve=curve,
        )


def render(fig: FleetFigures) -> str:
    cpu = fig.cpu_slices_ms
    shown = cpu if len(cpu) <= 12 else [*cpu[:6], "…", *cpu[-6:]]
    quarters = [fig.rss_curve[max(0, round(len(fig.rss_curve) * q) - 1)] for q in (0.25, 0.5,
                0.75, 1.0)] if fig.rss_curve else []  # fmt: skip
    lines = [
        f"Fleet: {fig.subaccounts} subaccounts, {fig.cycles} cycles measured, "
        f"{fig.transfers} transfers made; CPU slices {shown} ms; fleet RSS over the stretch "
        + ", ".join(f"{rss:.1f} MB at {t:.0f} s" for t, rss in quarters)
        + " (the worst is the figure below)",
        "",
        "| goal | measured | verdict |",
        "|---|---|---|",
    ]
    lines += [
        f"| {name} | {text} | {'PASS' if ok else 'FAIL'} |" for name, text, ok in fig.verdicts()
    ]
    return "\n".join(lines)


TRACES = Path(__file__).parent / "traces"


def backtest_section(intervals: tuple[str, ...] = ("10", "30", "60")) -> tuple[str, bool]:
    """The fleet backtest on bench/traces/fleet-50 at each poll interval, with its goals."""
    from topup_guard.backtest import guard_settings
    from topup_guard.backtest_fleet import backtest_fleet
    from topup_guard.fleet.rules import load_fleet_file
    from topup_guard.fleet.trace import read_fleet_trace
    from topup_guard.sim.scenario import load_scenario

    scenario = load_scenario(TRACES / "fleet-50.json")
    assert scenario.fleet_trace is not None
    trace = read_fleet_trace(scenario.fleet_trace)
    rules = load_fleet_file(TRACES / "fleet-50.toml")
    lines = [
        "| poll_interval | refused EUR (guard / auto-reload alone) | subaccounts refusing | "
        "top-ups (needed) | transfers | API calls/h | list calls = cycles | mean primary EUR | "
        "verdict |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    ok_all = True
    for pi in intervals:
        settings = guard_settings(scenario, {"poll_interval": pi, "poll_min": "2"})
        rep = backtest_fleet(scenario, trace, settings, rules)
        g, a = rep.policies["fleet_guard"], rep.policies["autoreload_only"]
        needed = rep.topups_needed()
        others = g.api_calls - g.list_calls - g.transfers - g.topups
        ok = g.refused_spend <= a.refused_spend / 100 and g.topups <= needed + 1 and others == 0
        ok_all = ok_all and ok
        lines.append(
            f"| {pi} s | {g.refused_spend:.2f} / {a.refused_spend:.2f} | {g.accounts_refused} / "
            f"{a.accounts_refused} | {g.topups} ({needed}) | {g.transfers} | "
            f"{g.api_calls_per_hour:.0f} | {g.list_calls} | {g.mean_primary_balance:.2f} | "
            f"{'PASS' if ok else 'FAIL'} |"
        )
    head = (
        "## Fleet backtest (bench/traces/fleet-50: 50 subaccounts, 2 h, fleet-50.toml)\n\n"
        "Goals: refused demand at most 1% of what Vonage's auto-reload on the primary alone "
        "refuses; top-ups of the primary at most what its outflow needed + 1; every API call "
        "besides transfers and top-ups is the cycle's one list call.\n\n"
    )
    return head + "\n".join(lines), ok_all


def section(fig: FleetFigures) -> str:
    return (
        "## Fleet mode at scale (`python -m bench.fleet`: `topup-guard run` with 1,000 "
        "subaccounts over HTTP)\n\n" + render(fig)
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.fleet", description=__doc__)
    parser.add_argument("--subaccounts", type=int, default=1000)
    parser.add_argument("--window", type=float, default=30.0, help="seconds measured")
    args = parser.parse_args(argv)
    fig = measure(args.subaccounts, args.window)
    print(render(fig))
    return 0 if all(ok for _, _, ok in fig.verdicts()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
