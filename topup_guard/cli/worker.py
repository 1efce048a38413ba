"""Worker commands: ``run``, ``simulate``, ``backtest``, ``demo``."""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import sys
from dataclasses import asdict
from decimal import Decimal
from pathlib import Path
from typing import Any

from topup_guard.config import load_settings
from topup_guard.errors import ConfigError

_GAME_DAY = "(the game-day controls)"  # replaced by the text when ``simulate --help`` prints


class _GameDayHelp(argparse.RawDescriptionHelpFormatter):
    """Writes the game-day text only when help is printed: building it imports the simulator's
    faults and account model, which ``run`` (the same parser) never needs."""

    def add_text(self, text: str | None) -> None:
        if text is _GAME_DAY:
            from topup_guard.sim.gameday import game_day_help

            text = game_day_help()
        super().add_text(text)


def register(sub: Any) -> None:
    run = sub.add_parser("run", help="run the guard (configured only by environment variables)")
    run.set_defaults(handler=_run)

    sim = sub.add_parser(
        "simulate",
        help="serve a simulated Vonage account over HTTP, steerable for game days",
        description="A simulated Vonage account (rest and api hosts on one port) accepting the "
        "demo credentials unless VONAGE_API_KEY / VONAGE_API_SECRET / TOPUP_GUARD_TRX (or their "
        "_FILE variants) say otherwise.",
        epilog=_GAME_DAY,
        formatter_class=_GameDayHelp,
    )
    sim.add_argument("--host", default="127.0.0.1")
    sim.add_argument("--port", type=int, default=8089)
    sim.add_argument("--scenario", type=Path, help="scenario JSON (default: embedded bursty)")
    sim.add_argument("--speed", type=float, default=1.0, help="simulated seconds per real second")
    sim.add_argument("--tls-cert", type=Path, help="serve HTTPS with this certificate (PEM)")
    sim.add_argument("--tls-key", type=Path, help="private key for --tls-cert (PEM)")
    sim.set_defaults(handler=_simulate)

    bt = sub.add_parser("backtest", help="replay a spend trace: guard vs Vonage alone vs naive")
    bt.add_argument("--trace", type=Path, help="CSV with header t,spend (one account)")
    bt.add_argument(
        "--fleet-trace",
        type=Path,
        help="CSV with header t,account,amount: replay a fleet (the scenario's fleet_trace key "
        "does the same); the fleet guard against Vonage's auto-reload on the primary alone",
    )
    bt.add_argument(
        "--fleet-file", type=Path, help="the fleet rules (TOML) for a fleet replay; default: none"
    )
    bt.add_argument("--scenario", type=Path, required=True, help="scenario JSON")
    bt.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a guard setting (lower-case name without TOPUP_GUARD_)",
    )
    bt.add_argument("--json", action="store_true", help="print one JSON object")
    bt.add_argument(
        "--sweep",
        metavar="KEY=V1,V2,...",
        help="run the guard alone under each value of one setting and print the frontier "
        "(API calls/h, mean and peak balance, refused demand, credits), e.g. "
        "--sweep poll_interval=10,30,60",
    )
    bt.add_argument(
        "--report",
        type=Path,
        metavar="FILE",
        help="also draw the balance over time under each policy: FILE.html (figure, table and "
        "notes), .png or .svg; needs pip install 'topup-guard[report]'",
    )
    bt.set_defaults(handler=_backtest)

    demo = sub.add_parser("demo", help="watch the guard save a bursty account (no credentials)")
    demo.add_argument(
        "--seconds",
        type=float,
        default=24.0,
        help="real seconds of part 1 (the bursty account on a fast clock); 0 skips it",
    )
    demo.add_argument("--speed", type=float, default=15.0, help="simulated seconds per second")
    demo.add_argument(
        "--signal-seconds",
        type=float,
        default=11.5,
        help="real seconds of part 2 (a sender forwarding its answers); 0 skips it",
    )
    demo.set_defaults(handler=_demo)


def _run(args: argparse.Namespace) -> int:
    from topup_guard.app import run_guard

    settings = load_settings()
    # What is loaded by now (modules, classes, the settings: ~50,000 objects) lives as long as the
    # process; frozen, the cyclic GC never walks it again (a full collection of it: ~30 ms).
    gc.freeze()
    return asyncio.run(run_guard(settings))


def _simulate(args: argparse.Namespace) -> int:
    from topup_guard.sim.server import serve_forever

    if (args.tls_cert is None) != (args.tls_key is None):
        raise ConfigError(["--tls-cert and --tls-key go together (for example --tls-cert c.pem "
                           "--tls-key k.pem)"])  # fmt: skip
    if args.speed <= 0:
        raise ConfigError(["--speed must be > 0 (for example --speed 10)"])
    return serve_forever(
        args.host, args.port, args.scenario, args.speed, args.tls_cert, args.tls_key
    )


def _backtest(args: argparse.Namespace) -> int:
    from topup_guard.backtest import (
        BacktestInputError,
        backtest,
        guard_settings,
        read_trace,
        render_table,
    )
    from topup_guard.backtest_notes import notes
    from topup_guard.replay import replay
    from topup_guard.sim.scenario import load_scenario

    overrides: dict[str, str] = {}
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise BacktestInputError([f"--set {item!r}: expected KEY=VALUE (e.g. poll_min=2)"])
        overrides[key.strip()] = value.strip()
    scenario = load_scenario(args.scenario)  # ConfigError (exit 2) names the key or problem
    if args.fleet_trace is not None or scenario.fleet_trace is not None:
        return _backtest_fleet(args, scenario, overrides)
    if args.trace is None:
        raise BacktestInputError(["--trace is required (or --fleet-trace for a fleet)"])
    if args.sweep is not None:
        return _sweep(args, scenario, read_trace(args.trace), overrides)
    if args.report is not None:
        from topup_guard.report import check_target

        check_target(args.report)  # before minutes of replay, not after
    trace = read_trace(args.trace)
    report = backtest(scenario, trace, overrides)
    settings = guard_settings(scenario, overrides)
    runs = replay(scenario, trace, overrides)
    lines = notes(report, runs, scenario, trace, settings)
    if args.json:
        print(json.dumps(report.to_json() | {"notes": lines}))
    else:
        print(render_table(report))
        print("\nWhat bound each policy:\n" + "\n".join(f"- {line}" for line in lines))
    if args.report is not None:
        from topup_guard.report import write

        write(args.report, runs, report, scenario, settings.min_balance,
              table=render_table(report), notes=lines)  # fmt: skip
        print(f"report written to {args.report}", file=sys.stderr)
    return 0


def _backtest_fleet(args: argparse.Namespace, scenario: Any, overrides: dict[str, str]) -> int:
    from topup_guard.backtest import guard_settings
    from topup_guard.backtest_fleet import backtest_fleet, render_fleet
    from topup_guard.fleet.rules import FleetRules, load_fleet_file
    from topup_guard.fleet.trace import read_fleet_trace

    trace = read_fleet_trace(args.fleet_trace or scenario.fleet_trace)
    rules = load_fleet_file(args.fleet_file) if args.fleet_file is not None else FleetRules()
    report = backtest_fleet(scenario, trace, guard_settings(scenario, overrides), rules)
    print(json.dumps(report.to_json()) if args.json else render_fleet(report))
    return 0


def _sweep(
    args: argparse.Namespace, scenario: Any, trace: list[Any], overrides: dict[str, str]
) -> int:
    from topup_guard.backtest import BacktestInputError, render_sweep, sweep

    key, sep, raw = str(args.sweep).partition("=")
    values = [v.strip() for v in raw.split(",") if v.strip()]
    if not sep or not key.strip() or not values:
        raise BacktestInputError(
            [f"--sweep {args.sweep!r}: expected KEY=V1,V2,... (e.g. poll_interval=10,30,60)"]
        )
    rows = sweep(scenario, trace, key.strip(), values, overrides)
    if args.json:
        plain = [
            {"value": r.value}
            | {k: float(v) if isinstance(v, Decimal) else v for k, v in asdict(r.guard).items()}
            for r in rows
        ]
        print(json.dumps({"key": key.strip(), "rows": plain}))
    else:
        print(render_sweep(key.strip(), rows))
    return 0


def _demo(args: argparse.Namespace) -> int:
    from topup_guard.demo import run_demo
    from topup_guard.logs import setup_logging

    setup_logging("text", "ERROR", stream=sys.stderr)  # the live view is the output here

    return asyncio.run(run_demo(seconds=args.seconds, speed=args.speed, out=sys.stdout,
                                signal_seconds=args.signal_seconds))  # fmt: skip
