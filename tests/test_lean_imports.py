"""A guard that is not configured for a feature does not load that feature's libraries.

Each check runs in a fresh interpreter (``sys.modules`` of the test process has everything), the
way ``topup-guard run`` does it: the CLI parser, the settings, the guard graph, a few real polls
against a simulator (its own process) on loopback, then the list of loaded modules.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench import footprint
from topup_guard.config import DEMO_API_KEY, DEMO_API_SECRET, DEMO_TRX

# What ``topup-guard run`` imports and does, minus the signal handling and the endless loop.
_GUARD_RUN = """
import asyncio, json, sys
from topup_guard.cli import build_parser
build_parser()
from topup_guard.config import load_settings
from topup_guard.app import build_guard

async def main() -> None:
    guard = build_guard(load_settings())
    await guard.start()
    for _ in range(3):
        await guard.engine.cycle()
    if guard.health is not None:
        guard.telemetry.render_prometheus()
    await guard.stop()

asyncio.run(main())
print(json.dumps(sorted(sys.modules)))
"""


@pytest.fixture(scope="module")
def sim_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A quiet simulator in its own process (in this one it would load aiohttp.web for all)."""
    with footprint.simulator(tmp_path_factory.mktemp("sim")) as url:
        yield url


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def loaded_modules(tmp_path: Path, sim_url: str, **env: str) -> set[str]:
    variables = {k: v for k, v in os.environ.items() if not k.startswith(("TOPUP_GUARD_", "OTEL_"))}
    variables |= {
        "VONAGE_API_KEY": DEMO_API_KEY,
        "VONAGE_API_SECRET": DEMO_API_SECRET,
        "TOPUP_GUARD_TRX": DEMO_TRX,
        "TOPUP_GUARD_STATE_PATH": str(tmp_path / "ledger.db"),
        "TOPUP_GUARD_HEALTH_HOST": "127.0.0.1",
        "TOPUP_GUARD_HEALTH_PORT": str(free_port()),
        "TOPUP_GUARD_LOG_LEVEL": "ERROR",
        "TOPUP_GUARD_REST_URL": sim_url,
        "TOPUP_GUARD_API_URL": sim_url,
        **env,
    }
    done = subprocess.run(
        [sys.executable, "-c", _GUARD_RUN],
        env=variables,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return set(json.loads(done.stdout.splitlines()[-1]))


def families(modules: set[str], *prefixes: str) -> set[str]:
    return {p for p in prefixes if any(m == p or m.startswith(p + ".") for m in modules)}


def test_a_guard_without_slack_otlp_or_redis_never_loads_their_libraries(
    tmp_path: Path, sim_url: str
) -> None:
    # The default configuration, sender-signal server on: it is served on asyncio streams too.
    modules = loaded_modules(tmp_path, sim_url, TOPUP_GUARD_SIGNAL_PORT=str(free_port()))

    assert "topup_guard.engine" in modules  # the check ran the real thing
    unwanted = ("slack_sdk", "opentelemetry.sdk", "opentelemetry.exporter", "redis", "tenacity")
    unwanted += ("aiohttp.web",)  # the probes by probehttp, the signals by signals.wire
    # The polls go over vonage.keepalive: aiohttp comes with the first top-up or notification.
    unwanted += ("aiohttp",)
    assert families(modules, *unwanted) == set()


def test_a_guard_with_a_slack_webhook_loads_slack_sdk(tmp_path: Path, sim_url: str) -> None:
    url = "http://127.0.0.1:9/services/T000/B000/XXXX"  # never called: nothing to announce
    modules = loaded_modules(tmp_path, sim_url, TOPUP_GUARD_SLACK_WEBHOOK_URL=url)

    assert families(modules, "slack_sdk") == {"slack_sdk"}


def test_a_guard_with_an_otlp_endpoint_loads_the_opentelemetry_sdk(
    tmp_path: Path, sim_url: str
) -> None:
    # Port 9 (discard) on loopback: nothing answers, and nothing waits for it (exports are async).
    modules = loaded_modules(tmp_path, sim_url, OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:9")

    assert families(modules, "opentelemetry.sdk.trace", "opentelemetry.sdk.metrics") == {
        "opentelemetry.sdk.trace",
        "opentelemetry.sdk.metrics",
    }


def test_the_worker_builds_the_whole_parser_without_loading_other_commands_or_the_simulator(
    tmp_path: Path, sim_url: str
) -> None:
    modules = loaded_modules(tmp_path, sim_url, TOPUP_GUARD_SIGNAL_PORT=str(free_port()))

    others = ("topup_guard.cli.account", "topup_guard.cli.account_secrets", "topup_guard.cli.check")
    others += ("topup_guard.cli.manual_topup", "topup_guard.cli.ledger", "topup_guard.cli.explain")
    others += ("topup_guard.sim", "topup_guard.audit")
    assert "topup_guard.cli.commands" in modules  # the parser was built
    assert families(modules, *others) == set()
