"""The footprint of ``topup-guard run`` against a ``topup-guard simulate`` subprocess.

- Memory: RSS (``VmRSS`` in ``/proc/<pid>/status``) after the guard has idled for a while with its
  default polling (goal: <= 50 MB after 5 minutes).
- CPU per poll cycle: CPU time of all threads (``schedstat``, ns) over a stretch of 0.5-second
  polling, divided by the balance reads the simulator counted. The stretch is cut into slices of
  about 5 s; the verdict takes the median slice, as the machine may be shared (a neighbour's burst
  inflates one slice, not the median); the mean over the whole stretch is shown too (goal: <= 1 ms).
- Instructions per poll (when valgrind is installed): the same polling under callgrind, counters
  zeroed after start-up; user-space instructions are not disturbed by neighbours (no goal).
- Time to ready: from spawning the process to ``/readyz`` answering 200 (goal: <= 1 s, median).

Linux only (``/proc``); no psutil. Every process started here is stopped here, by its own pid.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import math
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from topup_guard.config import DEMO_API_KEY, DEMO_API_SECRET, DEMO_TRX

CLI = [sys.executable, "-m", "topup_guard"]
QUIET_SCENARIO = {  # no demand: the guard polls and never needs to top up
    "initial_balance": 100,
    "topup_amount": 50,
    "autoreload_threshold": 10,
    "topup_latency_s": 0,
    "balance_latency_s": 0,
}
# Spends from the start: the guard's first top-up comes within seconds (aiohttp loaded then).
SPENDING_SCENARIO = QUIET_SCENARIO | {
    "initial_balance": 12,
    "spend": [{"start": 0, "end": 40, "rate": 0.2}],
}
RSS_GOAL_MB = 50.0
CPU_GOAL_MS = 1.0
READY_GOAL_S = 1.0
CPU_SLICE_S = 5.0
_CLK_TCK = os.sysconf("SC_CLK_TCK")
_SCENARIO_FILES = itertools.count()


@dataclass(frozen=True, slots=True)
class Footprint:
    idle_s: float
    rss_mb: float
    peak_rss_mb: float
    cpu_window_s: float
    polls: int
    cpu_ms_per_poll: float  # mean over the whole window
    cpu_slices_ms: list[float]  # per slice of about CPU_SLICE_S
    ready_runs: list[float]
    instructions_per_poll: float | None = None  # callgrind; None without valgrind
    wake_floor_ms: float | None = None  # an empty asyncio loop's CPU per 0.5-s wake, same time
    rss_after_topup_mb: float | None = None  # 30 s after the first top-up (aiohttp loaded)

    @property
    def cpu_median_ms(self) -> float:
        return statistics.median(self.cpu_slices_ms) if self.cpu_slices_ms else math.inf

    @property
    def ready_median_s(self) -> float:
        return statistics.median(self.ready_runs)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def get(url: str, timeout: float = 1.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return int(response.status), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, b""


def wait_for(url: str, *, timeout: float, proc: subprocess.Popen[bytes]) -> float:
    """Poll ``url`` until it answers 200; returns the seconds it took. Fails if ``proc`` dies."""
    started = time.perf_counter()
    while time.perf_counter() - started < timeout:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args!r} exited with {proc.returncode} before {url} was up")
        with contextlib.suppress(OSError):
            if get(url, timeout=0.5)[0] == 200:
                return time.perf_counter() - started
        time.sleep(0.01)
    raise RuntimeError(f"{url} not ready within {timeout} s")


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _clean_env() -> dict[str, str]:
    prefixes = ("TOPUP_GUARD_", "VONAGE_", "OTEL_")
    return {k: v for k, v in os.environ.items() if not k.startswith(prefixes)}


@contextlib.contextmanager
def simulator(workdir: Path, account: dict[str, object] | None = None) -> Iterator[str]:
    """A simulated account over HTTP (quiet unless told otherwise); yields its base URL."""
    scenario = workdir / f"account-{next(_SCENARIO_FILES)}.json"
    scenario.write_text(json.dumps(account or QUIET_SCENARIO), encoding="utf-8")
    port = free_port()
    proc = subprocess.Popen(
        [*CLI, "simulate", "--port", str(port), "--scenario", str(scenario)],
        env=_clean_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(f"{url}/_sim/state", timeout=20, proc=proc)
        yield url
    finally:
        stop(proc)


def balance_reads(sim_url: str) -> int:
    _, body = get(f"{sim_url}/_sim/state", timeout=5)
    calls = json.loads(body)["calls"].get("get-balance", {})
    return sum(int(n) for n in calls.values())


@contextlib.contextmanager
def guard(
    sim_url: str,
    workdir: Path,
    health_port: int,
    *,
    wrapper: tuple[str, ...] = (),
    ready_timeout: float = 30,
    **env: str,
) -> Iterator[tuple[subprocess.Popen[bytes], float]]:
    """``topup-guard run`` against the simulator; yields the process and its time to ready.

    ``wrapper`` goes before the interpreter (``valgrind ...``)."""
    variables = (
        _clean_env()
        | {
            "VONAGE_API_KEY": DEMO_API_KEY,
            "VONAGE_API_SECRET": DEMO_API_SECRET,
            "TOPUP_GUARD_TRX": DEMO_TRX,
            "TOPUP_GUARD_REST_URL": sim_url,
            "TOPUP_GUARD_API_URL": sim_url,
            "TOPUP_GUARD_STATE_PATH": str(workdir / f"ledger-{health_port}.db"),
            "TOPUP_GUARD_HEALTH_HOST": "127.0.0.1",
            "TOPUP_GUARD_HEALTH_PORT": str(health_port),
            # The default configuration, sender-signal server included, on a port of its own:
            # two guards measured back to back must not both want 8081.
            "TOPUP_GUARD_SIGNAL_PORT": str(free_port()),
            "TOPUP_GUARD_LOG_LEVEL": "WARNING",
        }
        | {f"TOPUP_GUARD_{k.upper()}": v for k, v in env.items()}
    )
    started = time.perf_counter()
    proc = subprocess.Popen(
        [*wrapper, *CLI, "run"], env=variables, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        wait_for(f"http://127.0.0.1:{health_port}/readyz", timeout=ready_timeout, proc=proc)
        yield proc, time.perf_counter() - started
    finally:
        stop(proc)


def rss_mb(pid: int, field: str = "VmRSS") -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024  # kB
    raise RuntimeError(f"no {field} for pid {pid}")


def cpu_seconds(pid: int) -> float:
    """CPU time of every thread of ``pid``, in ns precision from schedstat where available
    (utime/stime in /proc/<pid>/stat count whole clock ticks: 10 ms, too coarse per poll)."""
    try:
        return (
            sum(
                int((task / "schedstat").read_text().split()[0])
                for task in Path(f"/proc/{pid}/task").iterdir()
            )
            / 1e9
        )
    except (OSError, ValueError, IndexError):
        pass
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()  # after "pid (comm) "
    utime, stime = int(fields[11]), int(fields[12])
    return (utime + stime) / _CLK_TCK


def cpu_slices(pid: int, sim_url: str, window_s: float) -> tuple[float, list[float], int]:
    """CPU ms per poll over ``window_s``: the mean, the per-slice values, and the polls seen."""
    slices = max(1, round(window_s / CPU_SLICE_S))
    marks = [(cpu_seconds(pid), balance_reads(sim_url))]
    for _ in range(slices):
        time.sleep(window_s / slices)
        marks.append((cpu_seconds(pid), balance_reads(sim_url)))
    per_slice = [
        (c1 - c0) * 1000 / (r1 - r0) for (c0, r0), (c1, r1) in itertools.pairwise(marks) if r1 > r0
    ]
    polls = marks[-1][1] - marks[0][1]
    mean = (marks[-1][0] - marks[0][0]) * 1000 / polls if polls else math.inf
    return mean, per_slice, polls


_SLEEPER = """
import asyncio, sys, time
async def main():
    n = int(sys.argv[1])
    await asyncio.sleep(0.5)
    start = time.process_time()
    for _ in range(n):
        await asyncio.sleep(0.5)
    print((time.process_time() - start) * 1000 / n)
asyncio.run(main())
"""


@contextlib.contextmanager
def wake_floor(window_s: float) -> Iterator[list[float]]:
    """What this machine charges a process for waking at all: CPU ms per wake of an asyncio loop
    that does nothing but sleep 0.5 s, measured beside the guard (same neighbours, same time).
    A poll wakes at least twice (its timer, then Vonage's answer). On a VM with halt-polling
    this floor alone can be a few tenths of a millisecond."""
    wakes = max(1, int(window_s / 0.5) - 1)
    proc = subprocess.Popen([sys.executable, "-c", _SLEEPER, str(wakes)], stdout=subprocess.PIPE)
    found: list[float] = []
    try:
        yield found
        out, _ = proc.communicate(timeout=window_s + 30)
        found.append(float(out.decode().strip()))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def rss_after_first_topup(workdir: Path, settle_s: float = 30.0, **env: str) -> float | None:
    """RSS ``settle_s`` after the guard's first top-up: what the spend path (aiohttp, loaded at
    its first use) adds to a guard that has been polling; None if no top-up came within 60 s."""
    with (
        simulator(workdir, SPENDING_SCENARIO) as sim,
        guard(sim, workdir, free_port(), **env) as (g, _),
    ):
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            _, body = get(f"{sim}/_sim/state", timeout=5)
            if json.loads(body)["calls"].get("top-up"):
                time.sleep(settle_s)
                return rss_mb(g.pid)
            time.sleep(0.5)
    return None


def instructions_per_poll(sim_url: str, workdir: Path, window_s: float = 10.0) -> float | None:
    """User-space instructions per poll under callgrind (None when valgrind is not installed)."""
    if shutil.which("valgrind") is None or shutil.which("callgrind_control") is None:
        return None
    out = workdir / "callgrind.out"
    wrapper = ("valgrind", "--tool=callgrind", f"--callgrind-out-file={out}.%p")
    slow = {"poll_min": "0.5", "poll_interval": "0.5", "http_timeout": "30"}
    with guard(sim_url, workdir, free_port(), wrapper=wrapper, ready_timeout=240, **slow) as (
        proc,
        _,
    ):
        time.sleep(3.0)  # past start-up work
        subprocess.run(["callgrind_control", "-z", str(proc.pid)], capture_output=True, check=False)
        reads0 = balance_reads(sim_url)
        time.sleep(window_s)
        reads1 = balance_reads(sim_url)
        subprocess.run(["callgrind_control", "-d", str(proc.pid)], capture_output=True, check=False)
    dumps = sorted(workdir.glob("callgrind.out.*.*"))  # the -d dump: <pid>.1
    if not dumps or reads1 <= reads0:
        return None
    found = re.search(r"^(?:summary|totals): (\d+)", dumps[0].read_text(errors="replace"), re.M)
    return int(found.group(1)) / (reads1 - reads0) if found else None


def measure(
    *, idle_s: float, cpu_window_s: float, ready_runs: int, instructions: bool = True
) -> Footprint:
    """Idle RSS and CPU per poll run side by side (separate simulators); then the ready runs."""
    with tempfile.TemporaryDirectory(prefix="topup-guard-bench-") as tmp:
        work = Path(tmp)
        with simulator(work) as idle_sim, simulator(work) as busy_sim:
            with guard(idle_sim, work, free_port()) as (idle, _):
                idle_from = time.perf_counter()
                with guard(busy_sim, work, free_port(), poll_min="0.5", poll_interval="0.5") as (
                    busy,
                    _,
                ):
                    time.sleep(2.0)  # past start-up work
                    with wake_floor(cpu_window_s) as floor:
                        mean, slices, polls = cpu_slices(busy.pid, busy_sim, cpu_window_s)
                time.sleep(max(0.0, idle_s - (time.perf_counter() - idle_from)))
                rss, peak = rss_mb(idle.pid), rss_mb(idle.pid, "VmHWM")
            readies = []
            for _ in range(ready_runs):
                with guard(idle_sim, work, free_port()) as (_, ready_s):
                    readies.append(ready_s)
            per_poll = instructions_per_poll(busy_sim, work) if instructions else None
        after_topup = rss_after_first_topup(work)
    return Footprint(
        idle_s=idle_s,
        rss_mb=rss,
        peak_rss_mb=peak,
        cpu_window_s=cpu_window_s,
        polls=polls,
        cpu_ms_per_poll=mean,
        cpu_slices_ms=slices,
        ready_runs=readies,
        instructions_per_poll=per_poll,
        wake_floor_ms=floor[0] if floor else None,
        rss_after_topup_mb=after_topup,
    )
