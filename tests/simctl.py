"""Driving the simulator's control API (/_sim/*) from tests, over real HTTP."""

from __future__ import annotations

from typing import Any

import aiohttp

from topup_guard.sim import RunningSimulator


async def sim_post(sim: RunningSimulator, path: str, body: object) -> dict[str, Any]:
    async with aiohttp.ClientSession() as session, session.post(sim.url + path, json=body) as r:
        assert r.status == 200, await r.text()
        data: dict[str, Any] = await r.json()
        return data


async def sim_state(sim: RunningSimulator) -> dict[str, Any]:
    async with aiohttp.ClientSession() as session, session.get(sim.url + "/_sim/state") as r:
        data: dict[str, Any] = await r.json()
        return data


async def sim_control(sim: RunningSimulator, body: dict[str, Any]) -> None:
    await sim_post(sim, "/_sim/control", body)


async def inject_fault(sim: RunningSimulator, **fault: object) -> None:
    await sim_post(sim, "/_sim/faults", fault)
