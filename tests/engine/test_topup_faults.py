"""The safe top-up under every fault the simulator injects, over real sockets.

For each fault on ``POST /account/top-up`` the guard runs against the simulator until the account
is healthy again; the account must have received exactly the one top-up the guard meant to make,
and the ledger must say what happened.
"""

from __future__ import annotations

import asyncio
from decimal import Decimal
from pathlib import Path

import pytest

from tests.simctl import inject_fault
from topup_guard import retry
from topup_guard.clock import SystemClock
from topup_guard.config import DEMO_API_KEY, DEMO_API_SECRET, DEMO_TRX, load_settings
from topup_guard.engine import Engine
from topup_guard.events import Outcome, PollCompleted, Recorder, TopUpFinished
from topup_guard.ledger.base import AttemptState
from topup_guard.ledger.sqlite import SqliteLedger
from topup_guard.sim import RunningSimulator
from topup_guard.vonage.client import VonageClient

# fault kind -> (extra fault options, ledger states expected in attempt order)
CASES: dict[str, tuple[dict[str, float], list[AttemptState]]] = {
    "error_500_before": ({}, [AttemptState.UNCONFIRMED, AttemptState.SUCCEEDED]),
    "error_500_after": ({}, [AttemptState.SUCCEEDED]),
    "timeout_after": ({"delay": 5.0}, [AttemptState.SUCCEEDED]),
    "reset_before": ({}, [AttemptState.UNCONFIRMED, AttemptState.SUCCEEDED]),
    "reset_after": ({}, [AttemptState.SUCCEEDED]),
    "rate_limit": ({"retry_after": 0.5}, [AttemptState.SUCCEEDED]),
    "malformed_json": ({}, [AttemptState.SUCCEEDED]),
    "html_error": ({}, [AttemptState.UNCONFIRMED, AttemptState.SUCCEEDED]),
    "slow": ({"delay": 0.3}, [AttemptState.SUCCEEDED]),
}


async def guard_until_healthy(
    sim: RunningSimulator, tmp_path: Path
) -> tuple[Recorder, SqliteLedger]:
    settings = load_settings(
        {
            "VONAGE_API_KEY": DEMO_API_KEY,
            "VONAGE_API_SECRET": DEMO_API_SECRET,
            "TOPUP_GUARD_TRX": DEMO_TRX,
            "TOPUP_GUARD_REST_URL": sim.url,
            "TOPUP_GUARD_API_URL": sim.url,
            "TOPUP_GUARD_STATE_PATH": str(tmp_path / "ledger.db"),
            "TOPUP_GUARD_MIN_BALANCE": "10",
            "TOPUP_GUARD_POLL_MIN": "0.5",
            "TOPUP_GUARD_POLL_INTERVAL": "1",
            "TOPUP_GUARD_SETTLE_WINDOW": "1.5",
            "TOPUP_GUARD_HTTP_TIMEOUT": "1",
            "TOPUP_GUARD_TOPUP_AMOUNT": "50",
            # One top-up is what the balance needs here: no reserve beyond the rate's headroom.
            "TOPUP_GUARD_MIN_HEADROOM": "0",
        }
    )
    ledger = SqliteLedger(settings.state_path, account=DEMO_API_KEY)
    events = Recorder()
    stop = asyncio.Event()

    funded = False

    class StopWhenFundedAndSettled:
        """Stops once a top-up succeeded and no attempt is left in doubt."""

        def emit(self, event: object) -> None:
            nonlocal funded
            events.emit(event)  # type: ignore[arg-type]
            if isinstance(event, TopUpFinished) and event.outcome is Outcome.SUCCEEDED:
                funded = True
            if funded and isinstance(event, PollCompleted) and not engine.settlement.watch.entries:
                stop.set()

    async with VonageClient(DEMO_API_KEY, DEMO_API_SECRET, rest_url=sim.url, api_url=sim.url,
                            timeout=1.0) as client:  # fmt: skip
        engine = Engine(api=client, ledger=ledger, clock=SystemClock(), settings=settings,
                        sink=StopWhenFundedAndSettled())  # fmt: skip
        await asyncio.wait_for(engine.run(stop), timeout=30)
    return events, ledger


@pytest.mark.parametrize("kind", sorted(CASES))
async def test_account_receives_exactly_the_intended_top_up(
    kind: str, sim: RunningSimulator, tmp_path: Path
) -> None:
    retry.set_testing(False)  # honour Retry-After for real
    options, expected_states = CASES[kind]
    sim.account.set_balance(Decimal("8"), sim.account.now)  # below the 10 EUR floor
    sim.account.set_spend_rate(Decimal("0.01"), sim.account.now)  # and being spent
    await inject_fault(sim, endpoint="top-up", kind=kind, count=1, **options)

    events, ledger = await guard_until_healthy(sim, tmp_path)

    assert len(sim.account.topups) == 1, f"{kind}: the account must be charged exactly once"
    attempts = await ledger.latest(10)
    assert [a.state for a in attempts] == expected_states
    assert attempts[-1].credited is not None
    assert attempts[-1].credited > 0
    finished = sorted(
        (e for e in events.events if isinstance(e, TopUpFinished)), key=lambda e: e.attempt_id
    )
    assert finished[-1].outcome is Outcome.SUCCEEDED
    if expected_states[0] is AttemptState.UNCONFIRMED:
        assert finished[0].action_needed, "an unconfirmed top-up must tell a person what to do"
    await ledger.close()
