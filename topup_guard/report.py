"""``topup-guard backtest --report FILE``: the balance over time under each policy, as a picture.

One panel per policy, sharing the time axis: the balance, the floor (``min_balance``) and Vonage's
auto-reload threshold, the guard's or the poller's top-ups and Vonage's auto-reloads marked, and
the demand the account refused shaded red. ``.png`` and ``.svg`` write the figure; ``.html``
writes one self-contained page with the figure inline, the table and the notes.

matplotlib is an optional extra (``pip install 'topup-guard[report]'``), imported only here, only
when a report is asked for, with the Agg backend through ``Figure`` (no pyplot, no display): the
worker never loads it.
"""

from __future__ import annotations

import html
import io
from collections.abc import Mapping, Sequence
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

from topup_guard.backtest import BacktestReport
from topup_guard.errors import ConfigError
from topup_guard.replay import PolicyRun
from topup_guard.sim.scenario import Scenario

if TYPE_CHECKING:
    from matplotlib.figure import Figure

FORMATS = (".html", ".png", ".svg")
TITLES = {
    "guard": "topup-guard",
    "autoreload_only": "Vonage auto-reload alone",
    "threshold_poller": "naive poller (60 s, top up below the threshold)",
}


def check_target(path: Path) -> None:
    """Refuse a report path early (before the replay runs): exit 2 naming the problem."""
    if path.suffix.lower() not in FORMATS:
        raise ConfigError(
            [f"--report {path}: the file name must end in {', '.join(FORMATS)} (for example "
             "--report backtest.html)"]
        )  # fmt: skip
    if not path.resolve().parent.is_dir():
        raise ConfigError([f"--report {path}: the directory {path.parent} does not exist"])
    try:
        import matplotlib  # noqa: F401 - only asking whether it is installed
    except ImportError:
        raise ConfigError(
            ["--report needs matplotlib: pip install 'topup-guard[report]'"]
        ) from None


def figure(
    runs: Mapping[str, PolicyRun],
    report: BacktestReport,
    scenario: Scenario,
    floor: Decimal,
) -> Figure:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 2.6 * len(runs) + 0.6), layout="constrained")
    axes = fig.subplots(len(runs), 1, sharex=True, squeeze=False)[:, 0]
    top = max(max(r.balances, default=0.0) for r in runs.values()) * 1.08 or 1.0
    for ax, (name, run) in zip(axes, runs.items(), strict=True):
        _panel(ax, name, run, report, scenario, floor, top)
    axes[-1].set_xlabel("hours from the start of the trace")
    fig.suptitle(
        f"Balance under each policy: {report.events} spend events over "
        f"{report.duration_s / 3600:.1f} h, {report.total_spend:.2f} EUR demanded"
    )
    return fig


def _hours(times: Sequence[float]) -> list[float]:
    return [t / 3600.0 for t in times]


def _panel(
    ax: Any,
    name: str,
    run: PolicyRun,
    report: BacktestReport,
    scenario: Scenario,
    floor: Decimal,
    top: float,
) -> None:
    r = report.policies[name]
    ax.plot(_hours(run.times), run.balances, color="tab:blue", linewidth=1.0, label="balance")
    ax.axhline(float(floor), color="tab:orange", linestyle="--", linewidth=1, label="floor")
    ax.axhline(float(scenario.autoreload_threshold), color="grey", linestyle=":", linewidth=1,
               label="Vonage auto-reload threshold")  # fmt: skip
    for start, end in _spans([t for t, _ in run.refused]):
        ax.axvspan(start / 3600.0, end / 3600.0, color="tab:red", alpha=0.35, linewidth=0)
    if run.refused:  # a cross on the axis too: a few refused seconds are thinner than a pixel
        ax.scatter(_hours([t for t, _ in run.refused]), [0.0] * len(run.refused), marker="x",
                   color="tab:red", s=18, zorder=3, clip_on=False,
                   label=f"demand refused ({sum(e for _, e in run.refused):.2f} EUR)")  # fmt: skip
    _marks(ax, run.topups, run, "^", "tab:green", "top-up")
    _marks(ax, run.autoreloads, run, "s", "tab:purple", "Vonage auto-reload")
    ax.set_ylim(bottom=0, top=top)
    ax.set_ylabel("EUR")
    ax.set_title(
        f"{TITLES.get(name, name)}: {r.failed_spend:.2f} EUR refused, {r.topups} top-ups, "
        f"{r.autoreloads} auto-reloads, {r.api_calls_per_hour:.0f} API calls/h",
        loc="left",
        fontsize=10,
    )
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.005, 1.0), fontsize=7)


def _spans(times: Sequence[float], step: float = 5.0) -> list[tuple[float, float]]:
    """Sample times (each ending a ``step``) merged into ``(start, end)`` runs."""
    spans: list[tuple[float, float]] = []
    for t in times:
        if spans and t - spans[-1][1] <= step + 1e-6:
            spans[-1] = (spans[-1][0], t)
        else:
            spans.append((t - step, t))
    return spans


def _marks(
    ax: Any, when: Sequence[tuple[float, Decimal]], run: PolicyRun, marker: str, color: str,
    label: str,
) -> None:  # fmt: skip
    if not when:
        return
    xs = [t for t, _ in when]
    ax.scatter(_hours(xs), [_balance_at(run, t) for t in xs], marker=marker, color=color,
               s=28, zorder=3, label=f"{label} ({len(when)})")  # fmt: skip


def _balance_at(run: PolicyRun, t: float) -> float:
    """The sampled balance just after ``t`` (where the mark sits on the line)."""
    for sample_t, balance in zip(run.times, run.balances, strict=True):
        if sample_t >= t:
            return balance
    return run.balances[-1] if run.balances else 0.0


def write(
    path: Path,
    runs: Mapping[str, PolicyRun],
    report: BacktestReport,
    scenario: Scenario,
    floor: Decimal,
    *,
    table: str,
    notes: Sequence[str],
) -> None:
    """Write the report in the format the suffix names (``check_target`` first)."""
    from matplotlib import rc_context

    fig = figure(runs, report, scenario, floor)
    suffix = path.suffix.lower()
    with rc_context({"svg.fonttype": "none"}):  # text stays text: smaller, searchable
        if suffix in (".png", ".svg"):
            fig.savefig(path, format=suffix[1:], dpi=110)
            return
        svg = io.StringIO()
        fig.savefig(svg, format="svg")
    body = svg.getvalue()
    body = body[body.index("<svg") :]  # inline: drop the XML prolog and doctype
    items = "".join(f"<li>{html.escape(n)}</li>" for n in notes)
    path.write_text(
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        "<title>topup-guard backtest</title><style>body{font-family:sans-serif;margin:2em;"
        "max-width:72em}pre{background:#f4f4f4;padding:1em;overflow-x:auto}</style></head>"
        f"<body><h1>topup-guard backtest</h1>{body}<h2>Results</h2>"
        f"<pre>{html.escape(table)}</pre><h2>What bound each policy</h2><ul>{items}</ul>"
        "</body></html>\n",
        encoding="utf-8",
    )
