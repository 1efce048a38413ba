"""``InProcessFleet`` answers what ``VonageClient`` gets from the HTTP simulator, call for call."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, Protocol

import aiohttp
import pytest

from tests.conftest import DEMO_CREDENTIALS
from topup_guard.clock import VirtualClock
from topup_guard.config import DEMO_API_KEY, DEMO_API_SECRET, DEMO_TRX
from topup_guard.errors import OutcomeUnknownError, ServerError
from topup_guard.fleet.trace import read_fleet_trace
from topup_guard.model import Balance, SubaccountsOverview, Transfer
from topup_guard.sim import start_simulator
from topup_guard.sim.account import SimAccount
from topup_guard.sim.fleet import InProcessFleet
from topup_guard.sim.scenario import Scenario, load_scenario
from topup_guard.vonage.client import VonageClient

D = Decimal
TRACES = Path(__file__).parents[2] / "bench" / "traces"
EPOCH = 1_800_000_000.0
SINCE = datetime.fromtimestamp(EPOCH - 60, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
SCENARIO = Scenario.from_dict(
    {
        "initial_balance": 40,
        "topup_amount": 50,
        "autoreload_threshold": 10,
        "topup_latency_s": 0,
        "balance_latency_s": 0,
        "spend": [{"start": 0, "end": 100000, "rate": "0.01"}],
        "subaccounts": [
            {"api_key": "own00001", "name": "steady-1", "balance": "2", "spend_rate": "0.0075"},
            {"api_key": "shared01", "spend_rate": "0.015"},
            {"api_key": "post0001", "balance": "1", "credit_limit": "-5",
             "bursts": [{"at": 20, "duration": 30, "rate": "0.3"}]},
            {"api_key": "idle0001", "name": "idle", "balance": "7"},
        ],
    }
)  # fmt: skip


class FleetAPI(Protocol):  # the design's protocol (fleet/api.py is the lead's)
    async def list_subaccounts(self) -> SubaccountsOverview: ...
    async def transfer_balance(
        self, from_key: str, to_key: str, amount: Decimal, reference: str | None = None
    ) -> Transfer: ...
    async def list_balance_transfers(
        self, start_date: str, end_date: str | None = None, subaccount: str | None = None
    ) -> list[Transfer]: ...
    async def get_balance(self) -> Balance: ...
    async def top_up(self, trx: str) -> None: ...


Inject = Callable[[str, str], Awaitable[None]]


async def script(api: FleetAPI, clock: VirtualClock, inject: Inject) -> list[Any]:
    """A fleet loop's calls, good and bad; every answer or error, as comparable values."""
    seen: list[Any] = []

    async def record(call: Awaitable[Any]) -> None:
        try:
            answer = await call
        except Exception as exc:  # the error is the answer compared
            seen.append((type(exc).__name__, str(exc)))
        else:
            seen.append(dataclasses.replace(answer, request_id=None) if isinstance(answer, Balance)
                        else answer)  # fmt: skip

    await record(api.list_subaccounts())
    clock.advance(30)
    await record(api.transfer_balance(DEMO_API_KEY, "own00001", D("5"), "tg-x-1"))
    await record(api.transfer_balance(DEMO_API_KEY, "own00001", D("500"), "tg-x-2"))
    await record(api.transfer_balance(DEMO_API_KEY, "shared01", D("1"), "tg-x-3"))
    await record(api.transfer_balance(DEMO_API_KEY, "own00001", D("-1"), "tg-x-4"))
    await record(api.transfer_balance("post0001", DEMO_API_KEY, D("2"), None))
    clock.advance(60)
    await record(api.list_subaccounts())
    await record(api.list_balance_transfers(SINCE, subaccount="own00001"))
    await record(api.list_balance_transfers("yesterday"))
    await record(api.get_balance())
    await record(api.top_up(DEMO_TRX))
    await record(api.top_up("0" * 32))
    await inject("balance-transfers", "reset_after")  # applied, the answer lost
    await record(api.transfer_balance(DEMO_API_KEY, "idle0001", D("3"), "tg-x-5"))
    await inject("balance-transfers", "error_500_before")  # not applied
    await record(api.transfer_balance(DEMO_API_KEY, "idle0001", D("4"), "tg-x-6"))
    clock.advance(600)
    await record(api.list_balance_transfers(SINCE))
    await record(api.list_subaccounts())
    await record(api.get_balance())
    return seen


@pytest.fixture
async def http_answers() -> AsyncIterator[tuple[list[Any], dict[str, Any]]]:
    clock = VirtualClock()
    sim = await start_simulator(
        port=0, scenario=SCENARIO, credentials=DEMO_CREDENTIALS, clock=clock, epoch=EPOCH
    )
    try:
        async with (
            aiohttp.ClientSession() as http,
            VonageClient(DEMO_API_KEY, DEMO_API_SECRET, rest_url=sim.url, api_url=sim.url) as v,
        ):

            async def inject(endpoint: str, kind: str) -> None:
                body = {"endpoint": endpoint, "kind": kind}
                async with http.post(sim.url + "/_sim/faults", json=body) as resp:
                    assert resp.status == 200

            seen = await script(v, clock, inject)
            async with http.get(sim.url + "/_sim/state") as resp:
                yield seen, await resp.json()
    finally:
        await sim.stop()


def in_process() -> tuple[InProcessFleet, VirtualClock]:
    account = SimAccount.from_scenario(
        SCENARIO, api_key=DEMO_API_KEY, api_secret=DEMO_API_SECRET, trx=DEMO_TRX, epoch=EPOCH
    )
    clock = VirtualClock()
    return InProcessFleet(account, clock), clock


async def test_in_process_answers_equal_the_http_simulators(
    http_answers: tuple[list[Any], dict[str, Any]],
) -> None:
    fleet, clock = in_process()

    async def inject(endpoint: str, kind: str) -> None:
        fleet.add_fault(endpoint, kind)  # type: ignore[arg-type]

    seen = await script(fleet, clock, inject)
    over_http, _ = http_answers
    assert len(seen) == len(over_http) == 17
    for mine, theirs in zip(seen, over_http, strict=True):
        assert mine == theirs
    # The script did what it says: spent, moved money, refused, lost an answer.
    first, later = seen[0], seen[6]
    assert isinstance(first, SubaccountsOverview)
    assert isinstance(later, SubaccountsOverview)
    own = {s.api_key: s.balance for s in later.subaccounts}
    assert own["own00001"] == D(2) + D(5) - 90 * D("0.0075")
    assert (own["post0001"] or 0) < 0  # the burst spent into its credit
    assert [e[0] for e in seen if isinstance(e, tuple)] == [
        "ForbiddenError", "ForbiddenError", "ValueError", "ValidationError",
        "AutoReloadDisabledError", "OutcomeUnknownError", "ServerError",
    ]  # fmt: skip
    assert [t.reference for t in seen[14]] == ["tg-x-1", "", "tg-x-5"]  # 5 applied, 6 not


async def test_calls_are_counted_per_endpoint_like_the_simulators(
    http_answers: tuple[list[Any], dict[str, Any]],
) -> None:
    fleet, clock = in_process()

    async def inject(endpoint: str, kind: str) -> None:
        fleet.add_fault(endpoint, kind)  # type: ignore[arg-type]

    await script(fleet, clock, inject)
    _, state = http_answers
    assert fleet.total_calls == 16  # 17 answers, one a ValueError before any call
    by_endpoint = {e: sum(outcomes.values()) for e, outcomes in state["calls"].items()}
    listing = fleet.calls.pop("balance-transfers-list")
    assert by_endpoint.pop("balance-transfers") == fleet.calls.pop("balance-transfers") + listing
    assert by_endpoint == dict(fleet.calls)
    assert listing == 3


async def test_a_fault_can_apply_and_lose_the_answer_or_refuse_unapplied() -> None:
    fleet, _ = in_process()
    fleet.add_fault("balance-transfers", "timeout_after")
    with pytest.raises(OutcomeUnknownError, match="balance-transfers: outcome unknown"):
        await fleet.transfer_balance(DEMO_API_KEY, "idle0001", D(1), "tg-a")
    fleet.add_fault("balance-transfers", "error_500_after")
    with pytest.raises(ServerError):
        await fleet.transfer_balance(DEMO_API_KEY, "idle0001", D(1), "tg-b")
    fleet.add_fault("balance-transfers", "reset_before")
    with pytest.raises(OutcomeUnknownError):
        await fleet.transfer_balance(DEMO_API_KEY, "idle0001", D(1), "tg-c")
    fleet.add_fault("balance-transfers-list", "error_500_before", count=2)
    for _ in range(2):
        with pytest.raises(ServerError):
            await fleet.list_balance_transfers(SINCE)
    assert [t.reference for t in await fleet.list_balance_transfers(SINCE)] == ["tg-a", "tg-b"]
    balances = {s.api_key: s.balance for s in (await fleet.list_subaccounts()).subaccounts}
    assert balances["idle0001"] == D(9)
    assert fleet.pending_faults() == {}
    with pytest.raises(ValueError, match="unknown fault"):
        fleet.add_fault("subaccounts", "slow")  # type: ignore[arg-type]


async def test_each_call_takes_its_latency_and_sees_the_account_at_that_time() -> None:
    account = SimAccount.from_scenario(
        SCENARIO, api_key=DEMO_API_KEY, api_secret=DEMO_API_SECRET, trx=DEMO_TRX, epoch=EPOCH
    )
    clock = VirtualClock()
    fleet = InProcessFleet(account, clock, api_latency_s=0.5, balance_latency_s=0.25)
    overview = await fleet.list_subaccounts()
    assert clock.now() == 0.5
    own = {s.api_key: s.balance for s in overview.subaccounts}
    assert own["own00001"] == D(2)  # not yet a whole message at 0.5 s
    await fleet.get_balance()
    assert clock.now() == 0.75
    clock.advance(9.25)
    overview = await fleet.list_subaccounts()
    assert {s.api_key: s.balance for s in overview.subaccounts}["own00001"] == D(2) - 10 * D(
        "0.0075"
    )


async def test_the_committed_fleet_trace_replays_alike_over_http_and_in_process() -> None:
    scenario = load_scenario(TRACES / "fleet-50.json")
    trace = read_fleet_trace(TRACES / "fleet-50.csv")
    clock = VirtualClock()
    # The scenario names its trace: the simulator replays it unasked, as `simulate` would.
    sim = await start_simulator(port=0, scenario=scenario, credentials=DEMO_CREDENTIALS,
                                clock=clock, epoch=EPOCH)  # fmt: skip
    account = SimAccount.from_scenario(
        scenario, api_key=DEMO_API_KEY, api_secret=DEMO_API_SECRET, trx=DEMO_TRX, epoch=EPOCH,
        fleet_trace=trace,
    )  # fmt: skip
    fleet_clock = VirtualClock()
    fleet = InProcessFleet(account, fleet_clock)
    try:
        async with VonageClient(
            DEMO_API_KEY, DEMO_API_SECRET, rest_url=sim.url, api_url=sim.url
        ) as vonage:
            first = await vonage.list_subaccounts()
            for _ in range(12):  # two hours, a look every ten minutes
                clock.advance(600)
                fleet_clock.advance(600)
                one = await vonage.get_subaccount("sub00001")  # first: it must advance too
                assert one == await fleet.get_subaccount("sub00001")
                assert await vonage.list_subaccounts() == await fleet.list_subaccounts()
            last = await fleet.list_subaccounts()
    finally:
        await sim.stop()
    start = {s.api_key: s.balance for s in first.subaccounts}
    spent = [s.api_key for s in last.subaccounts if (s.balance or 0) < (start[s.api_key] or 0)]
    assert len(spent) > 30  # most of the fleet spent from its own balance
    assert last.primary.balance != first.primary.balance  # and the shared ones from the primary's
    refused = account.subaccount_figures(7200.0)
    assert sum(1 for f in refused.values() if f.refused_events) > 10  # nobody funds them here
