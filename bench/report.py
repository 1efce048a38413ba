"""Markdown for the results: the same text is printed and written to ``bench/RESULTS.md``."""

from __future__ import annotations

from collections.abc import Sequence

from bench.backtests import REPLAY_GOAL_S, Throughput, TraceResult
from bench.footprint import CPU_GOAL_MS, READY_GOAL_S, RSS_GOAL_MB, Footprint
from topup_guard.backtest import METRIC_ROWS, POLICIES


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows, strict=True)]

    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(str(c).ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    rule = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(header), rule, *(line(r) for r in rows)])


def verdict(passed: bool) -> str:
    return "PASS" if passed else "FAIL"


def backtest_section(result: TraceResult) -> str:
    r = result.report
    rows = [[label, *(fmt(r.policies[p]) for p in POLICIES)] for label, fmt in METRIC_ROWS]
    goals = "\n".join(f"- {g.verdict}: {g.name} ({g.detail})" for g in result.goals)
    frontier = [
        [f"poll_interval {row.value} s", f"{row.guard.api_calls_per_hour:.0f}",
         f"{row.guard.mean_balance:.2f}", f"{row.guard.peak_balance:.2f}",
         f"{row.guard.failed_spend:.2f}", str(row.guard.credits)]
        for row in result.frontier
    ]  # fmt: skip
    if result.signal is not None:
        g = result.signal
        frontier.append(["signal on, poll_interval 300 s", f"{g.api_calls_per_hour:.0f}",
                         f"{g.mean_balance:.2f}", f"{g.peak_balance:.2f}",
                         f"{g.failed_spend:.2f}", str(g.credits)])  # fmt: skip
    parts = [
        f"### {result.name}",
        "",
        f"{r.events} events over {r.duration_s / 3600:.2f} h, total_spend "
        f"{r.total_spend:.2f} EUR, min_topups {r.min_topups}.",
        "",
        table(["", *POLICIES], rows),
        "",
        table(["guard", "calls/h", "mean EUR", "peak EUR", "refused EUR", "credits"], frontier),
        "",
        goals,
        f"- Feasibility: {result.feasibility.line()}.",
    ]
    if result.blind is not None:
        b = result.blind
        verdict = (
            "polling at 60 s can see it in time"
            if b.fits
            else "polling alone cannot see it in time: the sender's signal is the answer"
        )
        parts.append(
            f"- Polling bound: the most spent in any {b.window_s:g} s (a 60-s poll interval +"
            f" latency + margin) is {b.peak_spend:.2f} EUR vs the headroom kept {b.buffer:.2f}"
            f" EUR (floor + one top-up): {verdict}."
        )
    return "\n".join(parts)


def throughput_section(runs: Sequence[Throughput]) -> str:
    rows = [
        [
            t.name,
            str(t.events),
            f"{t.replay_s:.2f}",
            f"{t.events_per_s:,.0f}",
            f"{t.cli_s:.2f}",
            verdict(t.passed),
        ]
        for t in runs
    ]
    header = [
        "trace",
        "events",
        "replay s (3 policies, best of 3)",
        "events/s",
        "CLI wall s",
        f"CLI < {REPLAY_GOAL_S:g} s",
    ]
    return table(header, rows)


def footprint_section(f: Footprint) -> str:
    ready = ", ".join(f"{s:.2f}" for s in f.ready_runs)
    rows = [
        [
            f"RSS after {f.idle_s:g} s idle (default polling)",
            f"{f.rss_mb:.1f} MB (peak {f.peak_rss_mb:.1f} MB)",
            f"<= {RSS_GOAL_MB:g} MB after 300 s",
            verdict(f.rss_mb <= RSS_GOAL_MB) + ("" if f.idle_s >= 300 else " (shortened)"),
        ],
        *(
            [
                [
                    "RSS 30 s after its first top-up (aiohttp, loaded at its first use, included)",
                    f"{f.rss_after_topup_mb:.1f} MB",
                    f"<= {RSS_GOAL_MB:g} MB",
                    verdict(f.rss_after_topup_mb <= RSS_GOAL_MB),
                ]
            ]
            if f.rss_after_topup_mb is not None
            else []
        ),
        [
            f"CPU per poll cycle, all threads (0.5 s polls, {f.cpu_window_s:g} s, {f.polls} "
            f"polls; median of {len(f.cpu_slices_ms)} slices: "
            + ", ".join(f"{ms:.2f}" for ms in f.cpu_slices_ms)
            + ")",
            f"{f.cpu_median_ms:.2f} ms (mean {f.cpu_ms_per_poll:.2f})",
            f"<= {CPU_GOAL_MS:g} ms",
            verdict(f.cpu_median_ms <= CPU_GOAL_MS),
        ],
        [
            f"start to /readyz 200 (median of {len(f.ready_runs)}: {ready} s)",
            f"{f.ready_median_s:.2f} s",
            f"<= {READY_GOAL_S:g} s",
            verdict(f.ready_median_s <= READY_GOAL_S),
        ],
    ]
    if f.wake_floor_ms is not None:
        rows.append(
            [
                "the machine's floor: CPU per wake of an asyncio loop that only sleeps 0.5 s, "
                "measured beside it (a poll wakes at least twice: its timer, Vonage's answer)",
                f"{f.wake_floor_ms:.2f} ms",
                "",
                "",
            ]
        )
    if f.instructions_per_poll is not None:
        rows.append(
            [
                "user-space instructions per poll (callgrind, 0.5 s polls, 10 s)",
                f"{f.instructions_per_poll / 1e6:.2f} M",
                "",
                "",
            ]
        )
    return table(["measure", "result", "goal", "verdict"], rows)
