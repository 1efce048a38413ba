"""The simulator as a game-day tool: its banner, its help and the README say how to steer it,
and the examples they give work against a real ``topup-guard simulate`` process."""

from __future__ import annotations

import asyncio
import json
import re
import sys
from pathlib import Path

import aiohttp
import pytest

from topup_guard.cli import build_parser
from topup_guard.config import DEMO_API_KEY, DEMO_API_SECRET, DEMO_TRX
from topup_guard.sim.control import _CONTROL_KEYS, _SUB_CONTROL_KEYS
from topup_guard.sim.faults import ENDPOINTS, FAULT_KINDS
from topup_guard.sim.gameday import game_day_help
from topup_guard.sim.server import SimCredentials, banner

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()


def simulate_help() -> str:
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    return str(sub.choices["simulate"].format_help())  # type: ignore[attr-defined]


@pytest.mark.parametrize("where", ["help", "readme"])
def test_every_control_key_fault_kind_and_endpoint_is_documented(where: str) -> None:
    text = simulate_help() if where == "help" else README.split("### Game day")[1]
    for word in (*_CONTROL_KEYS, *_SUB_CONTROL_KEYS, *FAULT_KINDS, *ENDPOINTS, "/_sim/state",
                 "/_sim/control", "/_sim/faults", "/_sim/subaccounts"):  # fmt: skip
        assert word in text, word


def test_the_banner_prints_the_demo_credentials_in_full() -> None:
    text = banner(
        "http://127.0.0.1:8089", 10, SimCredentials(DEMO_API_KEY, DEMO_API_SECRET, DEMO_TRX)
    )
    assert f"VONAGE_API_KEY={DEMO_API_KEY} VONAGE_API_SECRET={DEMO_API_SECRET}" in text
    assert f"TOPUP_GUARD_TRX={DEMO_TRX}" in text
    assert "TOPUP_GUARD_REST_URL=http://127.0.0.1:8089" in text
    assert "/_sim/control" in text


def test_the_banner_never_prints_credentials_taken_from_the_environment() -> None:
    text = banner("http://x:1", 1, SimCredentials("mykey123", "MyRealSecret9", "realtrx0000"))
    assert "mykey123" in text
    assert "MyRealSecret9" not in text
    assert "realtrx0000" not in text
    assert "secret and trx not shown" in text


def examples(text: str) -> list[tuple[str, object]]:
    return [(path, json.loads(body)) for path, body in
            re.findall(r"curl -s -X POST \S+?(/_sim/\w+) -d '([^']+)'", text)]  # fmt: skip


async def test_the_documented_examples_work_against_a_real_simulate_process(
    tmp_path: Path,
) -> None:
    assert len(examples(game_day_help())) == 2
    assert examples(README.split("### Game day")[1]) == examples(game_day_help())
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "topup_guard", "simulate", "--port", "0", "--speed", "10",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    assert proc.stdout is not None
    try:
        first = (await asyncio.wait_for(proc.stdout.readline(), 30)).decode()
        url = re.search(r"on (http://\S+) ", first)
        assert url is not None, first
        second = (await proc.stdout.readline()).decode()
        assert f"VONAGE_API_SECRET={DEMO_API_SECRET}" in second
        async with aiohttp.ClientSession() as session:
            for path, body in examples(game_day_help()):
                async with session.post(url.group(1) + path, json=body) as r:
                    assert r.status == 200, await r.text()
            async with session.get(url.group(1) + "/_sim/state") as r:
                state = await r.json()
        assert state["fail_payments"] == 3
        assert [f["kind"] for f in state["faults"]] == ["timeout_after"]
    finally:
        proc.terminate()
        await proc.wait()
