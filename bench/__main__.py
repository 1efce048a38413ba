"""``python -m bench`` (``make bench``): backtest tables and goals, replay speed, footprint.

``--quick`` runs one trace and idles 20 s, for a fast look; the default is the full run (four
traces, 300 s idle: about six minutes). The results are printed and written to bench/RESULTS.md.
Exit 1 when a backtest goal fails; the footprint verdicts are printed only, as they depend on
the machine.
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

from bench import backtests, fleet, fleet_sim, footprint, heldout, report
from topup_guard import retry

RESULTS = Path(__file__).parent / "RESULTS.md"


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    p.add_argument("--quick", action="store_true", help="one trace, 20 s idle, 3 ready runs")
    p.add_argument("--idle-seconds", type=float, help="idle time before reading RSS (300)")
    p.add_argument("--cpu-seconds", type=float, help="0.5-s polling window for CPU/poll (30)")
    p.add_argument("--ready-runs", type=int, help="start-to-ready runs, median taken (5)")
    p.add_argument("--traces", nargs="+", choices=backtests.TRACE_NAMES, help="traces to run")
    p.add_argument("--no-footprint", action="store_true", help="skip the subprocess measures")
    p.add_argument(
        "--no-instructions", action="store_true", help="skip the callgrind instruction count"
    )
    p.add_argument(
        "--heldout-seeds", type=int, help="held-out traces per family, 0 to skip (8; quick: 1)"
    )
    p.add_argument("--out", type=Path, default=RESULTS, help="markdown output (bench/RESULTS.md)")
    args = p.parse_args(argv)
    quick = args.quick
    args.idle_seconds = (
        args.idle_seconds if args.idle_seconds is not None else (20 if quick else 300)
    )
    args.cpu_seconds = args.cpu_seconds if args.cpu_seconds is not None else (10 if quick else 30)
    args.ready_runs = args.ready_runs or (3 if quick else 5)
    args.traces = args.traces or (["flash"] if quick else list(backtests.TRACE_NAMES))
    if args.heldout_seeds is None:
        args.heldout_seeds = 1 if quick else 8
    return args


def anatomy_section() -> str:
    """``python -m bench.anatomy`` output: where the memory and the CPU go (README explains)."""
    runs = [["imports"], ["polls", "--cycles", "2000"]]
    outputs = [
        subprocess.run(
            [sys.executable, "-m", "bench.anatomy", *run],
            capture_output=True,
            text=True,
            check=True,
            timeout=300,
        ).stdout.strip()
        for run in runs
    ]
    return (
        "## Where the memory and the CPU go (`python -m bench.anatomy imports|polls`)\n\n"
        "Own RSS and import time charged to each module of `run`'s imports (a package's total "
        "depends on which module loads a shared library first):\n\n"
        f"{outputs[0]}\n\nThe real guard graph against the simulator, engine cycles in a tight "
        "loop under cProfile (builtins charged to their callers):\n\n"
        f"{outputs[1]}"
    )


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    retry.set_testing(False)
    # The backtests' simulated guards log what a real one would (a one-off debit, a reading
    # dropped): not for this report.
    logging.getLogger("topup_guard").setLevel(logging.ERROR)
    sections: list[str] = []

    def emit(text: str) -> None:
        print(text + "\n", flush=True)
        sections.append(text)

    cpu = platform.processor() or platform.machine()
    emit(
        "# topup-guard benchmarks\n\n"
        f"`python -m bench{' --quick' if args.quick else ''}` on {time.strftime('%Y-%m-%d')}, "
        f"Python {platform.python_version()}, {cpu}, {os.cpu_count()} CPUs. "
        f"Idle {args.idle_seconds:g} s, CPU window {args.cpu_seconds:g} s, "
        f"{args.ready_runs} ready runs."
    )
    emit("## Backtests (bench/traces, 6 h each, one event per second)")
    results = []
    for name in args.traces:
        result = backtests.backtest_table(
            backtests.TRACES / f"{name}.csv", backtests.TRACES / f"{name}.json"
        )
        results.append(result)
        emit(report.backtest_section(result))
    emit("## Backtest throughput\n\n" + report.throughput_section(
        [backtests.throughput(r) for r in results]
    ))  # fmt: skip
    emit(fleet_sim.section(fleet_sim.measure()))  # the 1,000-subaccount trace, made here
    fleet_text, fleet_ok = fleet.backtest_section()
    emit(fleet_text)
    passed = fleet_ok and all(g.passed for r in results for g in r.goals)
    if args.heldout_seeds > 0:
        # Measured, not gating: traffic nobody tuned on says where the policy stands.
        print(f"(held-out traces: {args.heldout_seeds} per family)", flush=True)
        judged = heldout.judge(list(heldout.FAMILIES), args.heldout_seeds, lambda _: None)
        emit(heldout.section(judged, args.heldout_seeds))
    if not args.no_footprint:
        extra = 0 if args.no_instructions else 45  # callgrind: a slow start, then 10 s of polls
        print(
            f"(measuring topup-guard run: about {args.idle_seconds + 15 + extra:.0f} s)", flush=True
        )
        fp = footprint.measure(
            idle_s=args.idle_seconds,
            cpu_window_s=args.cpu_seconds,
            ready_runs=args.ready_runs,
            instructions=not args.no_instructions,
        )
        emit("## Footprint of `topup-guard run` (simulator subprocess)\n\n"
             + report.footprint_section(fp))  # fmt: skip
        emit(anatomy_section())
        emit(fleet.section(fleet.measure()))
    args.out.write_text("\n\n".join(sections) + "\n", encoding="utf-8")
    print(f"written to {args.out}")
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
