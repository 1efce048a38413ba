"""Where ``topup-guard run``'s memory and CPU go: the measurements behind the footprint work.

``python -m bench.anatomy imports`` imports what ``run`` imports, in a fresh interpreter, and
charges each module the RSS and time of its own execution (its imports are charged to them):
totals by top-level package, and the largest single modules.

``python -m bench.anatomy polls [--cycles N] [--gap S]`` builds the real guard graph
(``build_guard``) against a simulator subprocess and profiles N engine cycles over real sockets
(``--gap`` seconds of sleep between cycles; 0 for a tight loop): Python calls per cycle and the
profile's time share by area. Calls per cycle are deterministic; times are not (shared CPUs).

``python -m bench.anatomy floor [--polls N] [--gap S]``: the CPU of the least a poll can be on
this machine (the sleep, the kept-alive GET, the JSON parse: none of the guard) and of a bare
wake of the same loop — what any poller pays here before doing anything.
"""

from __future__ import annotations

# Few imports at the top: ``imports`` measures a fresh interpreter, so whatever this module loads
# itself (asyncio, argparse, ...) would go uncharged. The rest is imported where it is used.
import collections
import importlib
import importlib.abc
import importlib.machinery
import os
import sys
import time
from collections.abc import Sequence
from types import ModuleType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pstats

# What ``topup-guard run`` imports before its first poll (the CLI parser, settings, the graph).
RUN_IMPORTS = ("topup_guard.cli", "topup_guard.config", "topup_guard.app")


_PAGE = os.sysconf("SC_PAGE_SIZE")


def rss_mb() -> float:
    with open("/proc/self/statm", "rb") as f:  # binary: a text codec would be an import here
        return int(f.read().split()[1]) * _PAGE / 2**20


class _Charged(importlib.abc.Loader):
    """Delegates to ``loader``; records the RSS and time of ``exec_module``, minus its imports."""

    def __init__(self, loader: Any, name: str, ledger: _ImportLedger) -> None:
        self._loader, self._name, self._ledger = loader, name, ledger

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        created: ModuleType | None = self._loader.create_module(spec)
        return created

    def exec_module(self, module: ModuleType) -> None:
        self._ledger.stack.append([0.0, 0.0])
        rss0, t0 = rss_mb(), time.perf_counter()
        try:
            self._loader.exec_module(module)
        finally:
            rss, took = rss_mb() - rss0, time.perf_counter() - t0
            child_rss, child_t = self._ledger.stack.pop()
            self._ledger.own[self._name] = (rss - child_rss, took - child_t)
            if self._ledger.stack:
                self._ledger.stack[-1][0] += rss
                self._ledger.stack[-1][1] += took


class _ImportLedger(importlib.abc.MetaPathFinder):
    def __init__(self) -> None:
        self.own: dict[str, tuple[float, float]] = {}
        self.stack: list[list[float]] = []

    def find_spec(
        self, name: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec: importlib.machinery.ModuleSpec | None = finder.find_spec(name, path, target)
            if spec is not None:
                if spec.loader is not None and hasattr(spec.loader, "exec_module"):
                    spec.loader = _Charged(spec.loader, name, self)
                return spec
        return None


def imports_report(top: int = 15) -> str:
    """Run in a fresh interpreter (``main`` does): charges every module ``run`` imports."""
    ledger = _ImportLedger()
    sys.meta_path.insert(0, ledger)
    start, t0 = rss_mb(), time.perf_counter()
    cli = importlib.import_module("topup_guard.cli")
    cli.build_parser()
    for name in RUN_IMPORTS[1:]:
        importlib.import_module(name)
    total_rss, took = rss_mb() - start, time.perf_counter() - t0
    sys.meta_path.remove(ledger)
    by_package: dict[str, list[float]] = collections.defaultdict(lambda: [0.0, 0.0, 0])
    for name, (rss, secs) in ledger.own.items():
        entry = by_package[name.split(".")[0]]
        entry[0] += rss
        entry[1] += secs
        entry[2] += 1
    lines = [
        f"interpreter {start:.1f} MB; run's imports: {len(ledger.own)} modules, "
        f"+{total_rss:.1f} MB, {took * 1000:.0f} ms",
        "",
        "| package | modules | own RSS MB | own import ms |",
        "|---|---|---|---|",
    ]
    ranked = sorted(by_package.items(), key=lambda kv: -kv[1][0])
    lines += [f"| {p} | {n:.0f} | {r:.2f} | {s * 1000:.1f} |" for p, (r, s, n) in ranked[:top]]
    lines += ["", "largest single modules (own RSS MB, own ms):"]
    singles = sorted(ledger.own.items(), key=lambda kv: -kv[1][0])[:top]
    lines += [f"  {name}: {rss:.2f} MB, {secs * 1000:.1f} ms" for name, (rss, secs) in singles]
    return "\n".join(lines)


_AREAS = (  # first match wins: file path fragment -> area
    ("/aiohttp/", "aiohttp"),
    ("/yarl/", "aiohttp"),
    ("/multidict/", "aiohttp"),
    ("asyncio/", "asyncio"),
    ("selectors.py", "asyncio"),
    ("topup_guard/vonage/", "Vonage client (errors, parsing)"),
    ("topup_guard/policy/", "engine, policy, ledger"),
    ("topup_guard/ledger/", "engine, policy, ledger"),
    ("topup_guard/engine.py", "engine, policy, ledger"),
    ("topup_guard/settling.py", "engine, policy, ledger"),
    ("topup_guard/limits.py", "engine, policy, ledger"),
    ("topup_guard/topup.py", "engine, policy, ledger"),
    ("topup_guard/", "telemetry, events, logs, clock"),
    ("/opentelemetry/", "telemetry, events, logs, clock"),
)


def _area(filename: str) -> str:
    return next((area for part, area in _AREAS if part in filename), "other (builtins, stdlib)")


def polls_report(cycles: int, gap: float) -> str:
    import asyncio
    import tempfile
    from pathlib import Path

    from bench import footprint
    from topup_guard.config import DEMO_API_KEY, DEMO_API_SECRET, DEMO_TRX

    with tempfile.TemporaryDirectory() as tmp, footprint.simulator(Path(tmp)) as sim:
        os.environ.update(
            VONAGE_API_KEY=DEMO_API_KEY,
            VONAGE_API_SECRET=DEMO_API_SECRET,
            TOPUP_GUARD_TRX=DEMO_TRX,
            TOPUP_GUARD_REST_URL=sim,
            TOPUP_GUARD_API_URL=sim,
            TOPUP_GUARD_STATE_PATH=str(Path(tmp) / "ledger.db"),
            TOPUP_GUARD_HEALTH_HOST="127.0.0.1",
            TOPUP_GUARD_HEALTH_PORT=str(footprint.free_port()),
            TOPUP_GUARD_LOG_LEVEL="ERROR",
        )
        stats = asyncio.run(_profile(cycles, gap))
    share: dict[str, float] = collections.Counter()
    calls: dict[str, float] = collections.Counter()
    raw: dict[Any, Any] = stats.stats  # type: ignore[attr-defined]
    for (filename, _, _), (_, ncalls, tottime, _, callers) in raw.items():
        # A builtin (``~``) or a small stdlib helper is charged to whoever called it.
        shares = [(_area(filename), 1.0)]
        if filename == "~" or _area(filename).startswith("other"):
            n = sum(c[1] for c in callers.values()) or 1
            shares = [(_area(caller[0]), c[1] / n) for caller, c in callers.items()] or shares
        for area, fraction in shares:
            share[area] += tottime * fraction
            calls[area] += ncalls * fraction
    total = sum(share.values())
    lines = [
        f"{cycles} cycles, {gap:g} s apart: {sum(calls.values()) / cycles:.0f} Python calls per "
        "cycle (each coroutine resumption counts as a call)",
        "",
        "| area | calls per cycle | share of profile time |",
        "|---|---|---|",
    ]
    for area, secs in sorted(share.items(), key=lambda kv: -kv[1]):
        lines.append(f"| {area} | {calls[area] / cycles:.0f} | {secs / total:.0%} |")
    return "\n".join(lines)


async def _profile(cycles: int, gap: float) -> pstats.Stats:
    import asyncio
    import cProfile
    import pstats

    from topup_guard.app import build_guard
    from topup_guard.config import load_settings

    guard = build_guard(load_settings())
    await guard.start()
    try:
        for _ in range(20):  # warm: connection open, caches filled
            await guard.engine.cycle()
        profile = cProfile.Profile(time.process_time)
        for _ in range(cycles):
            if gap:
                await asyncio.sleep(gap)
            profile.enable()
            await guard.engine.cycle()
            profile.disable()
    finally:
        await guard.stop()
    return pstats.Stats(profile)


async def _minimal_polls(url: str, polls: int, gap: float) -> tuple[float, float]:
    """CPU ms per poll of the least a poll can be here — sleep, the kept-alive GET, the JSON
    parse, nothing of the guard — and per bare wake of the same loop."""
    import asyncio
    import json

    from topup_guard.config import DEMO_API_KEY, DEMO_API_SECRET
    from topup_guard.vonage.keepalive import KeepAliveGet
    from topup_guard.vonage.parsing import Exchange
    from topup_guard.vonage.payloads import basic_authorization

    auth = basic_authorization(DEMO_API_KEY, DEMO_API_SECRET)
    get = KeepAliveGet(url, {"Authorization": auth, "Accept": "application/json"}, timeout=5)
    where = Exchange("GET", "/account/get-balance")
    await get.get(where.path, where)
    start = time.process_time()
    for _ in range(polls):
        await asyncio.sleep(gap)
        json.loads((await get.get(where.path, where)).body)
    per_poll = (time.process_time() - start) * 1000 / polls
    start = time.process_time()
    for _ in range(polls):
        await asyncio.sleep(gap)
    per_wake = (time.process_time() - start) * 1000 / polls
    await get.close()
    return per_poll, per_wake


def floor_report(polls: int, gap: float) -> str:
    import asyncio
    import tempfile
    from pathlib import Path

    from bench import footprint

    with tempfile.TemporaryDirectory() as tmp, footprint.simulator(Path(tmp)) as sim:
        per_poll, per_wake = asyncio.run(_minimal_polls(sim, polls, gap))
    return (
        f"{polls} polls {gap:g} s apart against the simulator: the least a poll can be (sleep, "
        f"kept-alive GET, JSON parse) {per_poll:.2f} ms of CPU; a bare wake of the same loop "
        f"{per_wake:.2f} ms (compare `make bench`'s CPU per poll of the whole guard)"
    )


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv == ["imports-here"]:  # the fresh interpreter ``imports`` starts
        print(imports_report())
        return 0
    import argparse
    import subprocess

    p = argparse.ArgumentParser(prog="python -m bench.anatomy", description=__doc__)
    sub = p.add_subparsers(dest="what", required=True)
    sub.add_parser("imports", help="RSS and time by package for run's imports")
    polls = sub.add_parser("polls", help="calls and profile share per engine cycle")
    polls.add_argument("--cycles", type=int, default=2000)
    polls.add_argument("--gap", type=float, default=0.0, help="sleep between cycles (s)")
    floor = sub.add_parser("floor", help="CPU of the least a poll can be, and of a bare wake")
    floor.add_argument("--polls", type=int, default=40)
    floor.add_argument("--gap", type=float, default=0.5)
    args = p.parse_args(argv)
    if args.what == "imports":
        return subprocess.call([sys.executable, "-m", "bench.anatomy", "imports-here"])
    if args.what == "floor":
        print(floor_report(args.polls, args.gap))
        return 0
    print(polls_report(args.cycles, args.gap))
    return 0


if __name__ == "__main__":
    sys.exit(main())
