"""Subaccounts that spend: over real HTTP, the client's list call shows what their demand did."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import aiohttp
import pytest

from tests.conftest import DEMO_CREDENTIALS
from topup_guard.clock import VirtualClock
from topup_guard.config import DEMO_API_KEY, DEMO_API_SECRET
from topup_guard.errors import ConfigError
from topup_guard.sim import RunningSimulator, start_simulator
from topup_guard.sim.scenario import Scenario
from topup_guard.vonage.client import VonageClient

D = Decimal
MSG = D("0.0075")  # the default message price: a rate of 0.0075 EUR/s is one message a second


@dataclass
class Fleet:
    sim: RunningSimulator
    clock: VirtualClock
    vonage: VonageClient
    http: aiohttp.ClientSession

    async def balances(self) -> dict[str, Decimal | None]:
        overview = await self.vonage.list_subaccounts()
        found = {s.api_key: s.balance for s in overview.subaccounts}
        return found | {"primary": overview.primary.balance}

    async def state(self) -> dict[str, Any]:
        async with self.http.get(self.sim.url + "/_sim/state") as resp:
            assert resp.status == 200
            return await resp.json()  # type: ignore[no-any-return]

    async def steer(self, key: str, **body: Any) -> tuple[int, Any]:
        async with self.http.post(self.sim.url + f"/_sim/subaccounts/{key}", json=body) as resp:
            return resp.status, await resp.json()


def scenario(*subaccounts: dict[str, Any], balance: int = 100) -> Scenario:
    return Scenario.from_dict(
        {
            "initial_balance": balance,
            "topup_amount": 50,
            "autoreload_threshold": 10,
            "auto_reload": False,  # no auto-reload: the primary's money moves only by demand here
            "topup_latency_s": 0,
            "balance_latency_s": 0,
            "subaccounts": list(subaccounts),
        }
    )


@pytest.fixture
async def fleet(request: pytest.FixtureRequest) -> AsyncIterator[Fleet]:
    clock = VirtualClock()
    sim = await start_simulator(
        port=0, scenario=request.param, credentials=DEMO_CREDENTIALS, clock=clock
    )
    try:
        async with (
            aiohttp.ClientSession() as http,
            VonageClient(DEMO_API_KEY, DEMO_API_SECRET, rest_url=sim.url, api_url=sim.url) as v,
        ):
            yield Fleet(sim, clock, v, http)
    finally:
        await sim.stop()


ONE_MSG_PER_S = scenario(
    {"api_key": "own00001", "balance": "1", "spend_rate": "0.0075"},
    {"api_key": "idle0001", "balance": "3"},
)


@pytest.mark.parametrize("fleet", [ONE_MSG_PER_S], indirect=True)
async def test_a_subaccount_with_a_rate_spends_its_own_balance_and_refuses_when_empty(
    fleet: Fleet,
) -> None:
    fleet.clock.advance(60)
    assert await fleet.balances() == {"own00001": D("0.55"), "idle0001": D(3), "primary": D(100)}
    fleet.clock.advance(140)  # 200 s: 1 EUR buys 133 messages, then the balance cannot pay
    assert (await fleet.balances())["own00001"] == D(1) - 133 * MSG
    own = (await fleet.state())["subaccounts"]["own00001"]
    assert own["served_events"] == 133
    assert own["refused_events"] == 200 - 133
    assert D(str(own["refused_spend"])) == (200 - 133) * MSG
    assert own["exhausted_seconds"] == pytest.approx(200 - 134, abs=1e-6)
    idle = (await fleet.state())["subaccounts"]["idle0001"]
    assert (idle["served_events"], idle["refused_events"], idle["spend_rate"]) == (0, 0, 0)


@pytest.mark.parametrize("fleet", [ONE_MSG_PER_S], indirect=True)
async def test_a_transfer_refills_an_empty_subaccount_and_its_demand_resumes(
    fleet: Fleet,
) -> None:
    fleet.clock.advance(300)
    before = (await fleet.state())["subaccounts"]["own00001"]
    await fleet.vonage.transfer_balance(DEMO_API_KEY, "own00001", D("2"), "tg-test-1")
    fleet.clock.advance(100)
    after = (await fleet.state())["subaccounts"]["own00001"]
    assert after["refused_events"] == before["refused_events"]  # nothing refused since
    assert after["served_events"] == before["served_events"] + 100
    assert after["exhausted_seconds"] == pytest.approx(before["exhausted_seconds"], abs=1e-6)
    balances = await fleet.balances()
    assert balances["own00001"] == D(1) - 133 * MSG + D(2) - 100 * MSG
    assert balances["primary"] == D(98)


SHARED = scenario(
    {"api_key": "shared01", "spend_rate": "0.075"},  # no balance: it spends the primary's
    {"api_key": "own00001", "balance": "5"},
    balance=3,
)


@pytest.mark.parametrize("fleet", [SHARED], indirect=True)
async def test_a_shared_balance_subaccount_spends_the_primarys_money(fleet: Fleet) -> None:
    fleet.clock.advance(10)  # 100 messages
    assert await fleet.balances() == {"shared01": None, "own00001": D(5), "primary": D("2.25")}
    fleet.clock.advance(60)  # the primary's 3 EUR buys 400 messages: refused after 40 s
    state = await fleet.state()
    shared = state["subaccounts"]["shared01"]
    assert (shared["served_events"], shared["refused_events"]) == (400, 300)
    assert state["failed_events"] == 0  # the primary's own demand: none refused
    assert D(str(state["balance"])) == 0


CREDIT = scenario(
    {"api_key": "post0001", "balance": "0", "credit_limit": "-1.5", "spend_rate": "0.0075"}
)


@pytest.mark.parametrize("fleet", [CREDIT], indirect=True)
async def test_a_postpaid_subaccount_spends_down_to_its_credit_limit(fleet: Fleet) -> None:
    fleet.clock.advance(300)  # 1.5 EUR of credit buys 200 messages
    assert (await fleet.balances())["post0001"] == D("-1.5")
    post = (await fleet.state())["subaccounts"]["post0001"]
    assert (post["served_events"], post["refused_events"]) == (200, 100)
    with pytest.raises(Exception, match="Insufficient Credit"):  # nothing left to transfer out
        await fleet.vonage.transfer_balance("post0001", DEMO_API_KEY, D("0.01"))


@pytest.mark.parametrize("fleet", [ONE_MSG_PER_S], indirect=True)
async def test_the_control_endpoint_changes_a_subaccounts_rate_balance_and_suspension(
    fleet: Fleet,
) -> None:
    status, body = await fleet.steer("idle0001", spend_rate="0.075")  # ten messages a second
    assert (status, D(str(body["spend_rate"]))) == (200, D("0.075"))
    fleet.clock.advance(10)
    assert (await fleet.balances())["idle0001"] == D("2.25")
    status, body = await fleet.steer("idle0001", spend_rate=None)  # back to the scenario: none
    assert (status, body["spend_rate"]) == (200, 0)
    fleet.clock.advance(10)
    assert (await fleet.balances())["idle0001"] == D("2.25")
    status, body = await fleet.steer("own00001", balance="0.5", suspended=True)
    assert (status, body["suspended"]) == (200, True)
    fleet.clock.advance(10)
    own = (await fleet.state())["subaccounts"]["own00001"]
    assert (D(str(own["balance"])), own["refused_events"]) == (D("0.5"), 10)
    assert [s.suspended for s in (await fleet.vonage.list_subaccounts()).subaccounts] == [
        True,
        False,
    ]


@pytest.mark.parametrize("fleet", [ONE_MSG_PER_S], indirect=True)
@pytest.mark.parametrize(
    ("key", "body", "status", "error"),
    [
        ("own00001", {"spend_rate": -1}, 400, "must not be negative"),
        ("own00001", {"spend": 1}, 400, "unknown key 'spend'"),
        ("own00001", {"suspended": "yes"}, 400, "true or false"),
        ("nobody00", {"spend_rate": 1}, 404, "no subaccount"),
    ],
)
async def test_the_control_endpoint_refuses_what_it_cannot_apply(
    fleet: Fleet, key: str, body: dict[str, Any], status: int, error: str
) -> None:
    got, answer = await fleet.steer(key, **body)
    assert (got, error in answer["error"]) == (status, True)
    assert (await fleet.state())["subaccounts"]["own00001"]["spend_rate"] == 0.0075


@pytest.mark.parametrize(
    ("entry", "error"),
    [
        (
            {"api_key": "a", "balance": 1, "credit_limit": 5},
            "credit_limit: must be zero or negative",
        ),
        ({"api_key": "a", "balance": 1, "spend_rate": -1}, "spend_rate: must not be negative"),
        ({"api_key": "a", "spend": [{"start": 0, "rate": 1}]}, "missing key 'end'"),
        ({"api_key": "a", "spend_rat": 1}, "unknown key 'spend_rat'"),
        ({"api_key": "a", "suspended": 1}, "suspended: must be true or false"),
    ],
)
def test_the_scenario_refuses_bad_subaccount_spend_keys(entry: dict[str, Any], error: str) -> None:
    with pytest.raises(ConfigError, match=error):
        scenario(entry)
