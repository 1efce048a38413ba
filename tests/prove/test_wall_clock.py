"""The wall clock jumping (NTP step, VM resume, a bad RTC) while monotonic time runs on.

Caps are counted from the ledger's wall-clock timestamps (they must survive restarts, which
monotonic time does not); scheduling uses monotonic time only. The account here wants a top-up
every ~4 minutes (0.2 EUR/s against 50 EUR top-ups), far more than the 4-per-hour cap allows,
so the cap is what limits top-ups and any cap leak shows at once.

Backwards: entries from "the future" keep counting (limits.usage), so a jump back can never let
the guard overspend; the price is availability: after a jump back by D the entries made before
it count for D + 1 h (day cap: D + 1 day), so top-ups stay blocked that long (CAP_REACHED alerts).
Forwards: a jump forward by J ages every ledger entry by J, which alone would let the hour cap
allow another hour's worth. The engine also counts its own top-ups on the monotonic clock
(limits.LocalSpend) and uses the larger count, so a running guard keeps its caps. The remaining
limitation: a restart right after a forward jump starts that record empty.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from tests.prove.conftest import Tally
from tests.prove.vrig import DAY, HOUR, VRig, account, most_in_window
from topup_guard import retry
from topup_guard.sim.spend import Phase, SpendProfile

HUNGRY = SpendProfile([Phase(0, 1e12, Decimal("0.2"))])
PER_HOUR = 4


@pytest.fixture(autouse=True)
def _no_backoff() -> None:
    retry.set_testing(True)
    yield  # type: ignore[misc]
    retry.set_testing(False)


async def run_with_jumps(tmp: Path, jumps: list[tuple[float, float]], end: float) -> VRig:
    """Run to ``end`` (monotonic s), jumping the wall clock by ``delta`` at each ``at``."""
    rig = VRig(tmp, account(HUNGRY), max_topups_per_hour=str(PER_HOUR),
               max_topups_per_day="1000", max_daily_amount="100000")  # fmt: skip
    for at, delta in sorted(jumps):
        await rig.run_until(at)
        rig.clock.jump_wall(delta)
    await rig.run_until(end)
    await rig.ledger.close()
    return rig


@pytest.mark.parametrize("back", [2 * HOUR, pytest.param(10 * HOUR, marks=pytest.mark.slow)])
async def test_backward_jump_never_lets_the_guard_overspend(
    back: float, tmp_path: Path, tally: Tally
) -> None:
    rig = await run_with_jumps(tmp_path, [(1.5 * HOUR, -back)], end=1.5 * HOUR + back + 1.5 * HOUR)
    times = rig.topup_times()
    assert most_in_window(times, HOUR) <= PER_HOUR, "more top-ups in a real hour than the cap"
    # Availability price: no top-up for ``back`` + 1 h after the jump, then the cap resumes.
    after = [t for t in times if t > 1.5 * HOUR]
    assert not after or after[0] >= 1.5 * HOUR + back
    assert after, "top-ups must resume once the wall clock has caught up"
    tally.add("wall_jumps_backward")
    tally.peak("max_topups_in_a_real_hour_after_backward_jump", most_in_window(times, HOUR))


@pytest.mark.parametrize("forward", [30 * 60.0, 2 * HOUR, 2 * DAY])
async def test_forward_jump_does_not_let_the_guard_overspend(
    forward: float, tmp_path: Path, tally: Tally
) -> None:
    rig = await run_with_jumps(tmp_path, [(1.5 * HOUR, forward)], end=4 * HOUR)
    worst = most_in_window(rig.topup_times(), HOUR)
    assert worst <= PER_HOUR, "the monotonic record must hold the cap across the jump"
    tally.add("wall_jumps_forward")
    tally.peak("max_topups_in_a_real_hour_after_forward_jump", worst)


async def test_jumps_back_and_forth_keep_monotonic_scheduling(tmp_path: Path, tally: Tally) -> None:
    jumps = [(HOUR, -5 * HOUR), (1.5 * HOUR, 5 * HOUR), (2 * HOUR, -DAY), (2.2 * HOUR, DAY)]
    rig = await run_with_jumps(tmp_path, jumps, end=5 * HOUR)
    calls_per_hour = rig.api.calls / 5
    # Polling follows monotonic time: the jumps neither stall it nor make it spin.
    assert 20 <= calls_per_hour <= 3600 / rig.settings.poll_min
    assert most_in_window(rig.topup_times(), HOUR) <= PER_HOUR
    assert rig.account.exhausted_seconds < 5 * HOUR
    tally.add("wall_jumps_mixed", len(jumps))
