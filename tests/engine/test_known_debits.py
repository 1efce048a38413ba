"""Money the guard moves out itself (a fleet's transfers) is neither spend nor an outlier, and a
transfer in doubt can never make the believed balance sit below the real one."""

from __future__ import annotations

from decimal import Decimal

from topup_guard.clock import VirtualClock
from topup_guard.config import DEMO_API_KEY, DEMO_API_SECRET, DEMO_TRX, load_settings
from topup_guard.engine import Engine
from topup_guard.events import Condition, ConditionsChanged, Recorder
from topup_guard.ledger.sqlite import SqliteLedger
from topup_guard.model import Balance

D = Decimal


class _NoAPI:
    async def get_balance(self) -> Balance:
        raise AssertionError("the fleet steps the engine with its own readings")

    async def top_up(self, trx: str) -> None:
        raise AssertionError("no top-up is wanted here")


def engine() -> tuple[Engine, VirtualClock, Recorder]:
    settings = load_settings({"VONAGE_API_KEY": DEMO_API_KEY, "VONAGE_API_SECRET": DEMO_API_SECRET,
                              "TOPUP_GUARD_TRX": DEMO_TRX, "TOPUP_GUARD_STATE_PATH": ":memory:",
                              "TOPUP_GUARD_MIN_BALANCE": "1"})  # fmt: skip
    clock, sink = VirtualClock(), Recorder()
    e = Engine(api=_NoAPI(), ledger=SqliteLedger(":memory:"), clock=clock, settings=settings,
               sink=sink)  # fmt: skip
    return e, clock, sink


async def spend(e: Engine, clock: VirtualClock, start: str, steps: int) -> Decimal:
    """Readings every 2 s at 0.05 EUR/s; returns the last balance read."""
    b = D(start)
    for _ in range(steps):
        await e.step(Balance(b, True))
        clock.advance(2)
        b -= D("0.1")
    return b + D("0.1")


def one_off(sink: Recorder) -> bool:
    snaps = [ev for ev in sink.events if isinstance(ev, ConditionsChanged)]
    return any(Condition.ONE_OFF_DEBIT in s.active for s in snaps)


async def test_an_applied_transfer_told_to_the_engine_is_neither_held_nor_a_one_off() -> None:
    e, clock, sink = engine()
    last = await spend(e, clock, "500", 12)
    assert e.note_debit(D(40), clock.now())
    clock.advance(2)
    await e.step(Balance(last - D(40) - D("0.1"), True))
    assert not e._held
    assert not one_off(sink)
    assert e.tracker.forecast(clock.now()).rate < 0.1  # type: ignore[union-attr]


async def test_a_transfer_in_doubt_that_happened_is_taken_from_the_next_drop() -> None:
    e, clock, sink = engine()
    last = await spend(e, clock, "500", 12)
    e.expect_debit(D(40))
    clock.advance(2)
    await e.step(Balance(last - D(40) - D("0.1"), True))
    assert not e._held
    assert not one_off(sink)
    e.forget_debit(D(40))  # settled later: nothing left to take
    assert e.note_debit(D(40), clock.now() - 3) is False  # a reading already showed it


async def test_a_transfer_in_doubt_that_did_not_happen_never_lowers_the_believed_balance() -> None:
    e, clock, _ = engine()
    last = await spend(e, clock, "500", 12)
    e.expect_debit(D(40))
    clock.advance(2)
    real = last - D(25)  # more than half the transfer, less than all: spend, not the transfer
    await e.step(Balance(real, True))
    e.forget_debit(D(40))  # the listing proved it did not happen
    believed = e._believed
    assert believed is None or believed.balance >= real - D("0.0001")
    clock.advance(2)
    await e.step(Balance(real - D("0.1"), True))
    # No phantom rise: nothing counted as a credit.
    assert e.tracker.forecast(clock.now()).credits_total == 0  # type: ignore[union-attr]
