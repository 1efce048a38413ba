"""A simulated week with bursts: memory flat, no exhaustion, caps held, API calls bounded.

The real engine and SQLite ledger run against the backtest's in-process account on a sampled
virtual clock. Demand repeats every 6 hours: a steady 0.004 EUR/s (about 14 EUR/h) plus a
campaign burst of 0.2 EUR/s for 10 minutes (120 EUR, i.e. three top-ups of 50 in ten minutes).
About 16 top-ups a day are needed, inside the default caps (4/h, 24/day, 1000 EUR/day), so any
exhaustion would be the guard's fault. Vonage's own auto-reload is off in this account.

Memory: ``tracemalloc`` measures the Python heap after day 1 and after day 7 (the ledger file
grows by design and is measured separately, per top-up).
"""

from __future__ import annotations

import gc
import sqlite3
import tracemalloc
from decimal import Decimal
from pathlib import Path

import pytest

from tests.prove.conftest import Tally
from tests.prove.vrig import DAY, HOUR, VRig, account, most_in_window
from topup_guard import retry
from topup_guard.ledger.base import AttemptState
from topup_guard.sim.spend import Burst, Phase, SpendProfile

pytestmark = pytest.mark.slow
BURSTY = SpendProfile(
    [Phase(0, 6 * HOUR, Decimal("0.004"))],
    [Burst(2 * HOUR, 600, Decimal("0.2"))],
    repeat_every=6 * HOUR,
)
MAX_HEAP_GROWTH = 512 * 1024  # bytes, day 1 -> day 7
MAX_CALLS_PER_HOUR = 200  # the bound asserted; the measured rate is printed


@pytest.fixture(autouse=True)
def _no_backoff() -> None:
    retry.set_testing(True)
    yield  # type: ignore[misc]
    retry.set_testing(False)


async def test_a_bursty_week_is_flat_safe_and_capped(tmp_path: Path, tally: Tally) -> None:
    rig = VRig(tmp_path, account(BURSTY))
    tracemalloc.start()
    try:
        await rig.run_until(DAY)
        gc.collect()
        day1, _ = tracemalloc.get_traced_memory()
        calls_day1, topups_day1 = rig.api.calls, len(rig.account.topups)
        await rig.run_until(7 * DAY)
        gc.collect()
        day7, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    acct = rig.account
    attempts = await rig.ledger.latest(100_000)
    await rig.ledger.close()

    growth = day7 - day1
    assert growth < MAX_HEAP_GROWTH, f"heap grew {growth} B from day 1 to day 7"

    assert acct.exhausted_seconds == 0, "ran dry although every top-up could land in time"
    assert acct.failed_events == 0

    times = rig.topup_times()
    s = rig.settings
    assert most_in_window(times, HOUR) <= s.max_topups_per_hour
    assert most_in_window(times, DAY) <= s.max_topups_per_day
    assert most_in_window(times, DAY) * Decimal(50) <= s.max_daily_amount
    succeeded = [a for a in attempts if a.state is AttemptState.SUCCEEDED]
    assert len(succeeded) == len(acct.topups), "ledger and account agree on every top-up"
    assert all(not a.state.unresolved for a in attempts)
    # No storm: about what the week's demand needed (demand - opening balance) / 50, plus slack.
    needed = (acct.served_spend - Decimal(60)) / 50
    assert len(acct.topups) <= needed + 3

    hours = 7 * DAY / HOUR
    per_hour = rig.api.calls / hours
    per_hour_after_day1 = (rig.api.calls - calls_day1) / (6 * DAY / HOUR)
    assert per_hour <= MAX_CALLS_PER_HOUR

    db = sqlite3.connect(s.state_path)
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()
    size = Path(s.state_path).stat().st_size
    per_topup = size / max(1, len(attempts))
    print(
        f"\nsoak: 7 days, {len(acct.topups)} top-ups ({topups_day1} on day 1), "
        f"{rig.api.calls} API calls = {per_hour:.1f}/h ({per_hour_after_day1:.1f}/h after day 1; "
        f"bound {MAX_CALLS_PER_HOUR}/h); heap day1 {day1} B, day7 {day7} B (growth {growth} B); "
        f"ledger {size} B = {per_topup:.0f} B per top-up; spend {acct.served_spend:.2f} EUR; "
        f"max per hour {most_in_window(times, HOUR)}, per day {most_in_window(times, DAY)}"
    )
    tally.set("simulated_days", 7)
    tally.set("topups_intended", len(succeeded))
    tally.set("topups_received", len(acct.topups))
    tally.set("exhausted_seconds", int(acct.exhausted_seconds))
    tally.set("api_calls_per_hour", round(per_hour, 1))
    tally.set("api_calls_per_hour_bound", MAX_CALLS_PER_HOUR)
    tally.set("heap_growth_bytes_day1_to_day7", growth)
    tally.set("ledger_bytes_per_topup", round(per_topup))
    tally.set("max_topups_in_any_hour", most_in_window(times, HOUR))
    tally.set("max_topups_in_any_day", most_in_window(times, DAY))
