"""``topup-guard demo``: the guard saving a bursty account, live, with nothing to configure.

Part 1: the simulator runs in-process on a free port with the embedded bursty scenario on an
accelerated clock; the real engine talks to it over HTTP with the real client, ledger and policy.
Afterwards the same scenario is replayed without the guard (Vonage's auto-reload alone) for
comparison. Part 2 (``demo_signal``): in real time, a sender's forwarded SMS answers make the
guard act within one message while its next poll is two minutes away.
"""

from __future__ import annotations

import asyncio
import math
import tempfile
from decimal import Decimal
from pathlib import Path
from typing import TextIO

from topup_guard.clock import SystemClock
from topup_guard.config import DEMO_API_KEY, DEMO_API_SECRET, DEMO_TRX, load_settings
from topup_guard.demo_signal import ACT_SECONDS, run_signal_act
from topup_guard.demo_timeline import summarize
from topup_guard.engine import Engine
from topup_guard.events import Event, Fanout, Outcome, PollCompleted, PollFailed, TopUpFinished
from topup_guard.ledger.sqlite import SqliteLedger
from topup_guard.policy.decide import Action
from topup_guard.sim.account import SimAccount
from topup_guard.sim.scenario import Scenario, default_scenario
from topup_guard.sim.server import start_simulator
from topup_guard.vonage.client import VonageClient


class LivePrinter:
    """Prints each poll and top-up as it happens, in simulated time."""

    def __init__(self, out: TextIO, speed: float, clock: SystemClock, started: float) -> None:
        self._out = out
        self._speed = speed
        self._clock = clock
        self._started = started
        self._last_line = -1.0

    def _stamp(self) -> str:
        sim = (self._clock.now() - self._started) * self._speed
        return f"[sim {int(sim) // 60:02d}:{int(sim) % 60:02d}]"

    def emit(self, event: Event) -> None:
        if isinstance(event, PollCompleted):
            fc, d = event.forecast, event.decision
            # One quiet line per simulated half minute is enough to follow; actions always show.
            if (
                d.action is Action.NOTHING
                and self._clock.now() - self._last_line < 30 / self._speed
            ):
                return
            self._last_line = self._clock.now()
            rate = f"{fc.rate_short * 60 / self._speed:6.2f} EUR/min" if fc else "   (learning)"
            tte = fc.time_to_exhaustion * self._speed if fc else math.inf
            tte_text = "never" if math.isinf(tte) else f"{tte:5.0f} s"
            mark = {"top_up": "TOP UP", "warn": "WARN", "nothing": "ok"}[d.action.value]
            line = (
                f"{self._stamp()} balance {event.balance.value:7.2f} EUR  spend {rate}  "
                f"dry in {tte_text:>7}  {mark}"
            )
            if d.action is not Action.NOTHING:
                line += f": {d.reason}"
            print(line, file=self._out, flush=True)
        elif isinstance(event, TopUpFinished):
            after = f"{event.balance_after:.2f}" if event.balance_after is not None else "?"
            print(
                f"{self._stamp()} >>> top-up {event.outcome.value}: {event.balance_before:.2f} → "
                f"{after} EUR ({event.detail})",
                file=self._out,
                flush=True,
            )
        elif isinstance(event, PollFailed):
            print(f"{self._stamp()} poll failed: {event.message}", file=self._out, flush=True)


def alone(scenario: Scenario, sim_seconds: float) -> SimAccount:
    """The same scenario with Vonage's auto-reload only, for comparison."""
    account = SimAccount.from_scenario(
        scenario, api_key=DEMO_API_KEY, api_secret=DEMO_API_SECRET, trx=DEMO_TRX
    )
    account.advance_to(sim_seconds)
    return account


async def run_demo(
    *, seconds: float, speed: float, out: TextIO, signal_seconds: float = ACT_SECONDS
) -> int:
    """Part 1 for ``seconds`` at ``speed``, then part 2 for ``signal_seconds``; 0 skips a part."""
    if seconds > 0:
        await run_polling_part(seconds=seconds, speed=speed, out=out)
    if signal_seconds > 0:
        print(
            "\nPart 2 of 2: the sender's own signal. Every answer of Vonage's SMS API carries the "
            "balance;\na sender that forwards its answers lets the guard react within one "
            "message instead of one poll.\n",
            file=out,
            flush=True,
        )
        summarize(await run_signal_act(seconds=signal_seconds, out=out), out)
    return 0


async def run_polling_part(*, seconds: float, speed: float, out: TextIO) -> None:
    """The guard alone against a bursty account on an accelerated clock, then the comparison."""
    scenario = default_scenario()
    sim = await start_simulator("127.0.0.1", 0, scenario=scenario, speed=speed)
    clock = SystemClock()
    with tempfile.TemporaryDirectory(prefix="topup-guard-demo-") as tmp:
        # Real seconds, tuned for an accelerated account: at 15x, 0.5 s is 7.5 simulated seconds.
        settings = load_settings(
            {
                "VONAGE_API_KEY": DEMO_API_KEY,
                "VONAGE_API_SECRET": DEMO_API_SECRET,
                "TOPUP_GUARD_TRX": DEMO_TRX,
                "TOPUP_GUARD_REST_URL": sim.url,
                "TOPUP_GUARD_API_URL": sim.url,
                "TOPUP_GUARD_STATE_PATH": str(Path(tmp) / "ledger.db"),
                "TOPUP_GUARD_MIN_BALANCE": "10",
                "TOPUP_GUARD_POLL_MIN": "0.5",
                "TOPUP_GUARD_POLL_INTERVAL": "3",
                "TOPUP_GUARD_TOPUP_LATENCY": "0.3",
                "TOPUP_GUARD_SAFETY_MARGIN": "1.5",
                # The account runs 15x fast: 20 s and 4 min here are 5 min and 1 h of its time.
                "TOPUP_GUARD_RATE_WINDOW_SHORT": str(300 / speed),
                "TOPUP_GUARD_RATE_WINDOW_LONG": str(3600 / speed),
                "TOPUP_GUARD_SETTLE_WINDOW": "4",
                "TOPUP_GUARD_MAX_TOPUPS_PER_HOUR": "60",
                "TOPUP_GUARD_MAX_TOPUPS_PER_DAY": "200",
                "TOPUP_GUARD_MAX_DAILY_AMOUNT": "10000",
            }
        )
        print(
            f"topup-guard demo, part 1 of 2: a simulated Vonage account at {sim.url}, "
            f"{speed:g}x speed, "
            f"{seconds:g} s ({seconds * speed / 60:.0f} simulated minutes).\n"
            f"Balance {scenario.initial_balance} EUR, campaign bursts; Vonage's own auto-reload "
            f"adds {scenario.topup_amount} EUR below {scenario.autoreload_threshold} EUR, checking "
            f"every {scenario.autoreload_check_min_s / 60:.0f}-"
            f"{scenario.autoreload_check_max_s / 60:.0f} min. The guard polls and tops up early.\n",
            file=out,
            flush=True,
        )
        ledger = SqliteLedger(settings.state_path, account=DEMO_API_KEY)
        started = clock.now()
        async with VonageClient(
            DEMO_API_KEY, DEMO_API_SECRET, rest_url=sim.url, api_url=sim.url, timeout=2.0
        ) as client:
            engine = Engine(
                api=client,
                ledger=ledger,
                clock=clock,
                settings=settings,
                sink=Fanout([LivePrinter(out, speed, clock, started)]),
            )
            stop = asyncio.Event()
            asyncio.get_running_loop().call_later(seconds, stop.set)
            await engine.run(stop)
        await ledger.close()
    account = sim.account
    sim_end = account.now
    await sim.stop()
    base = alone(scenario, sim_end)
    _summary(out, account, base, sim_end)


def _summary(out: TextIO, guarded: SimAccount, base: SimAccount, sim_end: float) -> None:
    def row(label: str, a: object, b: object) -> str:
        return f"  {label:<28}{a!s:>16}{b!s:>26}"

    def eur(x: Decimal) -> str:
        return f"{x:.2f} EUR"

    lines = [
        "",
        f"Summary over {sim_end / 60:.1f} simulated minutes:",
        row("", "with the guard", "Vonage auto-reload only"),
        row("failed spend (SMS rejected)", eur(guarded.failed_spend), eur(base.failed_spend)),
        row("failed messages", guarded.failed_events, base.failed_events),
        row("seconds without balance", f"{guarded.exhausted_seconds:.0f}",
            f"{base.exhausted_seconds:.0f}"),
        row("top-ups by the guard", len(guarded.topups), 0),
        row("Vonage auto-reloads", len(guarded.autoreloads), len(base.autoreloads)),
    ]  # fmt: skip
    print("\n".join(lines), file=out, flush=True)
    outcome = Outcome.SUCCEEDED.value
    print(
        f"\nEvery top-up is in the ledger ({outcome} or not) before and after its call.", file=out
    )
