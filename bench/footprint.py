"""The footprint of ``topup-guard run`` against a ``topup-guard simulate`` subprocess.

- Memory: RSS (``VmRSS`` in ``/proc/<pid>/status``) after the guard has idled for a while with its
  default polling (goal: <= 60 MB after 5 minutes).
- CPU per poll cycle: process CPU time (utime + stime from ``/proc/<pid>/stat``) over a stretch of
  0.5-second polling, divided by the balance reads the simulator counted (goal: <= 2 ms).
- Time to ready: from spawning the process to ``/readyz`` answering 200 (goal: <= 1.5 s, median).

Linux only (``/proc``); no psutil. Every process started here is stopped here, by its own pid.
"""

from __future__ import annotations

import contextlib
import json
import os
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
RSS_GOAL_MB = 60.0
CPU_GOAL_MS = 2.0
READY_GOAL_S = 1.5
_CLK_TCK = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True, slots=True)
class Footprint:
    idle_s: float
    rss_mb: float
    peak_rss_mb: float
    cpu_window_s: float
    polls: int
    cpu_ms_per_poll: float
    ready_runs: list[float]

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
def simulator(workdir: Path) -> Iterator[str]:
    """A quiet simulated account over HTTP; yields its base URL."""
    scenario = workdir / "quiet.json"
    scenario.write_text(json.dumps(QUIET_SCENARIO), encoding="utf-8")
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
    sim_url: str, workdir: Path, health_port: int, **env: str
) -> Iterator[tuple[subprocess.Popen[bytes], float]]:
    """``topup-guard run`` against the simulator; yields the process and its time to ready."""
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
            "TOPUP_GUARD_LOG_LEVEL": "WARNING",
        }
        | {f"TOPUP_GUARD_{k.upper()}": v for k, v in env.items()}
    )
    started = time.perf_counter()
    proc = subprocess.Popen(
        [*CLI, "run"], env=variables, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        wait_for(f"http://127.0.0.1:{health_port}/readyz", timeout=30, proc=proc)
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


def measure(*, idle_s: float, cpu_window_s: float, ready_runs: int) -> Footprint:
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
                    cpu0, reads0 = cpu_seconds(busy.pid), balance_reads(busy_sim)
                    time.sleep(cpu_window_s)
                    cpu1, reads1 = cpu_seconds(busy.pid), balance_reads(busy_sim)
                time.sleep(max(0.0, idle_s - (time.perf_counter() - idle_from)))
                rss, peak = rss_mb(idle.pid), rss_mb(idle.pid, "VmHWM")
            readies = []
            for _ in range(ready_runs):
                with guard(idle_sim, work, free_port()) as (_, ready_s):
                    readies.append(ready_s)
    polls = reads1 - reads0
    return Footprint(
        idle_s=idle_s,
        rss_mb=rss,
        peak_rss_mb=peak,
        cpu_window_s=cpu_window_s,
        polls=polls,
        cpu_ms_per_poll=(cpu1 - cpu0) * 1000 / polls if polls else float("inf"),
        ready_runs=readies,
    )
