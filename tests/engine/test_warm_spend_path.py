"""The spend path (aiohttp, for a guard that polls over ``vonage.keepalive``) is loaded once a
top-up comes within the horizon — in a poll before the one that must send it."""

from __future__ import annotations

from decimal import Decimal

from topup_guard.clock import VirtualClock
from topup_guard.config import DEMO_API_KEY, DEMO_API_SECRET, DEMO_TRX, load_settings
from topup_guard.engine import Engine
from topup_guard.events import Recorder
from topup_guard.ledger.sqlite import SqliteLedger
from topup_guard.model import Balance
from topup_guard.policy import Action


class _Account:
    def __init__(self) -> None:
        self.warmed = 0
        self.top_ups = 0

    def warm(self) -> None:
        self.warmed += 1

    async def get_balance(self) -> Balance:
        raise AssertionError("stepped with readings")

    async def top_up(self, trx: str) -> None:
        self.top_ups += 1


async def test_the_spend_path_is_warmed_once_before_the_first_top_up() -> None:
    settings = load_settings({"VONAGE_API_KEY": DEMO_API_KEY, "VONAGE_API_SECRET": DEMO_API_SECRET,
                              "TOPUP_GUARD_TRX": DEMO_TRX, "TOPUP_GUARD_STATE_PATH": ":memory:",
                              "TOPUP_GUARD_MIN_BALANCE": "5", "TOPUP_GUARD_POLL_INTERVAL": "10",
                              "TOPUP_GUARD_POLL_MIN": "2"})  # fmt: skip
    account, clock = _Account(), VirtualClock()
    engine = Engine(api=account, ledger=SqliteLedger(":memory:"), clock=clock, settings=settings,
                    sink=Recorder())  # fmt: skip
    balance, polls_warm = Decimal(100), 0
    for _ in range(300):
        await engine.step(Balance(balance, True))
        decision = engine.status.decision
        assert decision is not None
        if decision.action is Action.TOP_UP:
            break
        polls_warm += account.warmed
        clock.advance(2)
        balance -= Decimal("0.4")
    else:
        raise AssertionError("the balance ran down without a top-up")
    assert account.warmed == 1  # once, however many polls saw the exhaustion coming
    assert polls_warm >= 1  # warmed in a poll before the one that decided to top up
