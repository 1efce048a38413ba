"""`topup-guard demo` shows the guard doing its job: a top-up in time, nothing rejected."""

from __future__ import annotations

import io

from topup_guard.demo import run_demo


async def test_demo_tops_up_through_the_first_burst_and_loses_nothing() -> None:
    out = io.StringIO()
    # 20 s at 15x covers the first campaign burst, which empties 50 EUR about 3.5 minutes in.
    # Part 2 (the sender's signal) has its own test: test_demo_signal.py.
    assert await run_demo(seconds=20, speed=15, out=out, signal_seconds=0) == 0
    text = out.getvalue()
    assert ">>> top-up succeeded" in text
    guard_line = next(line for line in text.splitlines() if "failed spend" in line)
    with_guard, alone = (
        guard_line.split("EUR")[0].split()[-1],
        guard_line.split("EUR")[1].split()[-1],
    )
    assert with_guard == "0.00"
    assert float(alone) > 0, "Vonage's auto-reload alone must lose spend on this scenario"
