"""The demo's second part: a sender's forwarded answers make the guard act between two polls.

Real time, real HTTP, the real engine: the simulator serves ``/sms/json``; ``SimSender`` sends a
steady trickle of SMS through it, then a campaign burst, and forwards every raw answer to a real
``SignalServer`` whose inbox feeds the engine, which polls ``get-balance`` only every
``POLL_INTERVAL`` (120 s). Then the balance vanishes at once (a charge the sender did not make),
so the next message is refused. Every figure printed is measured while it happens: when the
answers showed what, when the guard read the balance and topped up, when its next poll was due.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import TextIO

from topup_guard.clock import SystemClock
from topup_guard.config import DEMO_API_KEY, DEMO_API_SECRET, DEMO_TRX, load_settings
from topup_guard.demo_timeline import ActTimeline, Poll
from topup_guard.engine import Engine
from topup_guard.events import Event, Fanout, PollCompleted, TopUpFinished
from topup_guard.ledger.sqlite import SqliteLedger
from topup_guard.model import Balance
from topup_guard.policy.decide import Action
from topup_guard.signals.inbox import SignalInbox
from topup_guard.signals.server import SignalServer
from topup_guard.sim.context import CONTEXT, SimContext
from topup_guard.sim.scenario import Scenario
from topup_guard.sim.sender import Answer, SimSender
from topup_guard.sim.server import start_simulator
from topup_guard.topup import AccountAPI
from topup_guard.vonage.client import VonageClient

POLL_INTERVAL = 120.0
START_BALANCE = Decimal("8")
FLOOR = Decimal("1")
TOPUP = Decimal("10")
PRICE = Decimal("0.0075")
STEADY_RATE = 5.0  # messages a second: a service's one-time codes
BURST_RATE = 50.0  # a campaign
# Seconds after the sender's first message.
BURST_AT, BURST_END, EMPTIED_AT = 3.0, 6.5, 8.5
ACT_SECONDS = 11.5
CREDIT_LATENCY = 1.0  # Vonage's "200" to the credit showing in the balance

# An account that spends only what the sender sends.
SCENARIO = Scenario(
    initial_balance=START_BALANCE,
    topup_amount=TOPUP,
    autoreload_threshold=Decimal("0"),
    topup_latency_s=CREDIT_LATENCY,
    balance_latency_s=0.02,
    message_price=PRICE,
)


class _ScheduleWatch(SystemClock):
    """The system clock, noting when the engine's own poll sleep is meant to end.

    Between polls the engine sleeps on the inbox's wake event until its next scheduled poll
    (``Engine._sleep_until``), and resumes that same sleep after each signal that needs no read:
    the end of it is when polling alone would have looked.
    """

    def __init__(self, wake: asyncio.Event, on_schedule: Callable[[float], None]) -> None:
        self._wake, self._on_schedule = wake, on_schedule
        self.due: float | None = None

    async def sleep(self, seconds: float, wake: asyncio.Event | None = None) -> bool:
        if wake is self._wake:
            due = self.wall() + max(0.0, seconds)
            if self.due is None or abs(due - self.due) > 0.05:
                self._on_schedule(due)
            self.due = due
        return await super().sleep(seconds, wake)


class _Wire:
    """The guard's Vonage client, passed through, telling when a top-up call leaves the guard."""

    def __init__(self, api: AccountAPI, on_top_up: Callable[[], None]) -> None:
        self._api, self._on_top_up = api, on_top_up

    async def get_balance(self) -> Balance:
        return await self._api.get_balance()

    async def top_up(self, trx: str) -> None:
        self._on_top_up()
        await self._api.top_up(trx)


class _Observer:
    """Builds the timeline from the engine's events and the sender's answers, telling it live.

    The guard's quick looks while it learns the rate or watches a credit arrive are counted, not
    printed, except the last before a long sleep (the one that says when the next poll is).
    """

    def __init__(self, out: TextIO) -> None:
        self._out = out
        self.line = ActTimeline(floor=FLOOR, steady_rate=STEADY_RATE)
        self.clock: _ScheduleWatch | None = None
        self._last_balance: Decimal | None = None
        self._said_refused = self._said_burst = False
        self._quiet: tuple[float, str] | None = None  # a poll line kept back
        self._reason = ""  # the decision a top-up call acts on
        self._wanted_unsent = False  # the last poll wanted a top-up; none was sent yet

    def say(self, at: float, text: str) -> None:
        print(f"  [{at - self.line.started:5.2f} s] {text}", file=self._out, flush=True)

    def schedule(self, due: float) -> None:
        if due - time.time() < 10 or self._quiet is None:
            return  # a quick look while it learns or verifies
        at, text = self._quiet
        self._quiet = None
        self.say(at, f"{text}; next poll in {due - at:.0f} s")

    def top_up_sent(self) -> None:
        now = time.time()
        if self._wanted_unsent:
            self.line.topups_on_a_read += 1
        self._wanted_unsent = False
        self.say(now, f"guard: top-up requested (POST /account/top-up), because {self._reason}")

    def emit(self, event: Event) -> None:
        now, line = time.time(), self.line
        if isinstance(event, PollCompleted):
            d = event.decision
            due = self.clock.due if self.clock is not None and line.polls else None
            poll = Poll(now, event.balance.value, due, d.action is Action.TOP_UP)
            previous = line.polls[-1].at if line.polls else 0.0
            line.polls.append(poll)
            self._quiet = None
            text = f"guard: get-balance {poll.balance:.2f} EUR"
            if poll.early and poll.due is not None:
                why = ("a message was refused" if any(r >= previous for r in line.refusals)
                       else "the answers show the balance falling fast")  # fmt: skip
                self.say(now, f"guard: {why}: it reads the balance now, {poll.due - now:.0f} s "
                         f"before its next poll: get-balance {poll.balance:.2f} EUR")  # fmt: skip
            elif self._wanted_unsent:
                self.say(now, f"{text} (a sudden drop is read twice before money moves)")
            elif len(line.polls) == 1:
                self.say(now, text)
            else:
                self._quiet = (now, text)
            self._reason = d.reason.split(";")[0]
            self._wanted_unsent = poll.top_up
        elif isinstance(event, TopUpFinished):
            after = f"{event.balance_after:.2f}" if event.balance_after is not None else "?"
            self.say(now, f"guard: top-up {event.outcome.value}: balance {after} EUR")

    def answer(self, a: Answer) -> None:
        line = self.line
        line.sent.append(a.at)
        if line.burst and a.at >= line.burst and not self._said_burst:
            self._said_burst = True
            self.say(a.at, f"sender: a campaign starts: {BURST_RATE:g} SMS/s "
                     f"({Decimal(BURST_RATE) * PRICE:.3f} EUR/s)")  # fmt: skip
        if a.status == "9":
            line.refusals.append(a.at)
            if not self._said_refused:
                self._said_refused = True
                self.say(a.at, "sender: a message is refused: status 9, out of credit")
        elif self._said_refused and a.status == "0":
            self._said_refused = False
            self.say(a.at, "sender: messages go through again")
        if a.balance is not None:
            line.balances.append((a.at, a.balance))
            last = self._last_balance
            if last is not None and a.balance > last + 1 and a.status == "0":
                self.say(a.at, f"sender: its answer shows the credit: {a.balance:.2f} EUR")
            self._last_balance = a.balance


def _settings(tmp: str, sim_url: str) -> dict[str, str]:
    return {
        "VONAGE_API_KEY": DEMO_API_KEY,
        "VONAGE_API_SECRET": DEMO_API_SECRET,
        "TOPUP_GUARD_TRX": DEMO_TRX,
        "TOPUP_GUARD_REST_URL": sim_url,
        "TOPUP_GUARD_API_URL": sim_url,
        "TOPUP_GUARD_STATE_PATH": str(Path(tmp) / "ledger.db"),
        "TOPUP_GUARD_MIN_BALANCE": str(FLOOR),
        "TOPUP_GUARD_POLL_INTERVAL": str(POLL_INTERVAL),
        "TOPUP_GUARD_POLL_MIN": "0.5",
        "TOPUP_GUARD_TOPUP_AMOUNT": str(TOPUP),
        "TOPUP_GUARD_TOPUP_LATENCY": str(CREDIT_LATENCY),
        "TOPUP_GUARD_SAFETY_MARGIN": "2",
        "TOPUP_GUARD_MIN_HEADROOM": "0",
        "TOPUP_GUARD_SETTLE_WINDOW": "4",
    }


async def _empty_the_account(ctx: SimContext, at: float, observer: _Observer) -> None:
    """At ``at``, a charge the sender did not make takes the whole balance."""
    await asyncio.sleep(at - time.time())
    t = ctx.advance()
    gone = ctx.account.balance
    ctx.account.one_off_debit(gone, t)
    observer.line.emptied = time.time()
    observer.say(observer.line.emptied, f"account: {gone:.2f} EUR gone at once, a charge this "
                 "sender did not make (another service, a transfer to a subaccount)")  # fmt: skip


async def run_signal_act(*, seconds: float = ACT_SECONDS, out: TextIO) -> ActTimeline:
    """Run the act for ``seconds`` of real time (at least ``EMPTIED_AT`` + 2.5, enough for the
    last credit to show); returns what was measured."""
    sim = await start_simulator("127.0.0.1", 0, scenario=SCENARIO)
    ctx = sim.app[CONTEXT]
    inbox = SignalInbox()
    signal = SignalServer(inbox, host="127.0.0.1", port=0)
    observer = _Observer(out)
    line = observer.line
    try:
        await signal.start()
        signal_url = f"http://127.0.0.1:{signal.port}"
        print(
            f"A sender sends {STEADY_RATE:g} SMS/s through the simulator ({sim.url}/sms/json)\n"
            f"and forwards every answer to the guard's signal endpoint "
            f"({signal_url}/v1/signals/sms).\nThe guard polls get-balance only every "
            f"{POLL_INTERVAL:g} s. Balance {START_BALANCE} EUR, floor {FLOOR} EUR, top-ups of "
            f"{TOPUP} EUR; real time.\n",
            file=out,
            flush=True,
        )
        clock = _ScheduleWatch(inbox.wake, observer.schedule)
        observer.clock = clock
        with tempfile.TemporaryDirectory(prefix="topup-guard-demo-") as tmp:
            settings = load_settings(_settings(tmp, sim.url))
            ledger = SqliteLedger(settings.state_path, account=DEMO_API_KEY)
            async with VonageClient(DEMO_API_KEY, DEMO_API_SECRET, rest_url=sim.url,
                                    api_url=sim.url, timeout=2.0) as client:  # fmt: skip
                api = _Wire(client, observer.top_up_sent)
                engine = Engine(api=api, ledger=ledger, clock=clock, settings=settings,
                                sink=Fanout([observer]), inbox=inbox)  # fmt: skip
                stop = asyncio.Event()
                line.started = time.time()
                guard = asyncio.create_task(engine.run(stop))
                sender = SimSender(
                    sim.url, api_key=DEMO_API_KEY, api_secret=DEMO_API_SECRET, rate=STEADY_RATE,
                    signal_url=signal_url, on_answer=observer.answer,
                    steps=[(BURST_AT, BURST_RATE), (BURST_END, STEADY_RATE)],
                )  # fmt: skip
                begun = time.time()
                line.burst = begun + BURST_AT
                observer.say(begun, f"sender: starts, {STEADY_RATE:g} SMS/s")
                sending = asyncio.create_task(sender.run(stop))
                emptying = asyncio.create_task(
                    _empty_the_account(ctx, begun + EMPTIED_AT, observer)
                )
                try:
                    left = max(seconds, EMPTIED_AT + 2.5) - (time.time() - line.started)
                    await asyncio.sleep(left)
                finally:
                    stop.set()  # also when interrupted: nothing keeps running behind the demo
                    emptying.cancel()
                await asyncio.gather(guard, sending, emptying, return_exceptions=True)
                for task in (guard, sending):
                    error = task.exception()
                    if error is not None:
                        raise error
            await ledger.close()
        # The simulator's own record of each top-up call, on its clock (real time here).
        offset = time.time() - ctx.sim_time()
        line.topups = [t + offset for t, _ in ctx.account.topups]
        line.reads = sum(ctx.calls_by_endpoint().get("get-balance", {}).values())
    finally:
        await signal.stop()
        await sim.stop()
    return line
