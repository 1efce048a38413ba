"""The demo's second act: a sender's forwarded answers make the guard act between two polls.

Real time, real HTTP, the real engine: the simulator serves ``/sms/json``; ``SimSender`` sends a
steady trickle of SMS through it, then a campaign burst, and forwards every raw answer to a real
``SignalServer`` whose inbox feeds the engine, which polls ``get-balance`` only every
``POLL_INTERVAL`` (120 s). Then the balance vanishes at once (a charge the sender did not make),
so the next message is refused. Every figure printed is measured while it happens: when the
answers showed what, when the guard read the balance and topped up, when its next poll was due.
"""

from __future__ import annotations

import asyncio
import math
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import TextIO

from topup_guard.clock import SystemClock
from topup_guard.config import DEMO_API_KEY, DEMO_API_SECRET, DEMO_TRX, load_settings
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


@dataclass(frozen=True, slots=True)
class Poll:
    at: float  # wall time the guard had the reading (and its decision)
    balance: Decimal
    due: float | None  # when the engine's own schedule had this poll (None: the first)
    top_up: bool

    @property
    def early(self) -> bool:
        """Brought forward by the senders' answers, not the schedule."""
        return self.due is not None and self.at < self.due - 1.0


@dataclass
class ActTimeline:
    """What happened, in wall times (Unix seconds), as the engine, the sender and the simulator
    saw it."""

    started: float = 0.0  # the guard's start; the live lines count from here
    burst: float = 0.0  # the campaign's first message
    emptied: float = 0.0  # the balance taken at once
    polls: list[Poll] = field(default_factory=list)
    topups: list[float] = field(default_factory=list)  # top-up calls, on the simulator's record
    refusals: list[float] = field(default_factory=list)  # status-9 answers
    sent: list[float] = field(default_factory=list)  # every answer's arrival
    reads: int = 0  # get-balance calls the simulator answered
    topups_on_a_read: int = 0  # top-up calls made right after a get-balance that asked for one

    def first_poll_after(self, t: float) -> Poll | None:
        return next((p for p in self.polls if p.at >= t and p.early), None)

    def first_topup_after(self, t: float) -> float | None:
        return next((x for x in self.topups if x >= t), None)

    def answers_after(self, a: float, b: float) -> int:
        """The sender's answers that arrived after ``a``, before ``b``."""
        return sum(1 for x in self.sent if a < x < b)

    def refused_between(self, a: float, b: float) -> int:
        return sum(1 for x in self.refusals if a <= x < b)


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
        self.line = ActTimeline()
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
            f"A sender sends {STEADY_RATE:g} SMS/s through the simulator ({sim.url}/sms/json) "
            f"and forwards every answer\nto the guard's signal endpoint ({signal_url}/v1/signals"
            f"/sms). The guard polls get-balance only every\n{POLL_INTERVAL:g} s. Balance "
            f"{START_BALANCE} EUR, floor {FLOOR} EUR, top-ups of {TOPUP} EUR, real time.\n",
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
                await asyncio.sleep(max(seconds, EMPTIED_AT + 2.5) - (time.time() - line.started))
                stop.set()
                await asyncio.gather(guard, sending, emptying)
            await ledger.close()
        # The simulator's own record of each top-up call, on its clock (real time here).
        offset = time.time() - ctx.sim_time()
        line.topups = [t + offset for t, _ in ctx.account.topups]
        line.reads = sum(ctx.calls_by_endpoint().get("get-balance", {}).values())
    finally:
        await signal.stop()
        await sim.stop()
    return line


@dataclass(frozen=True, slots=True)
class Reaction:
    """How the guard answered one moment of the act (seconds from the moment itself)."""

    looked_in: float  # to the get-balance read the answers brought forward
    topped_up_in: float  # to the top-up call reaching the simulator
    answers_before_look: int  # the sender's answers after the moment's own, before that read
    poll_was_due_in: float  # to the next poll the engine had scheduled: polling alone
    refused: int  # messages refused from the moment to the end of the act


def reaction(line: ActTimeline, moment: float) -> Reaction | None:
    """The guard's answer to ``moment`` (``line.burst``, or the first refusal); None if it
    never looked early or never topped up after it."""
    poll, topup = line.first_poll_after(moment), line.first_topup_after(moment)
    if poll is None or poll.due is None or topup is None:
        return None
    return Reaction(
        looked_in=poll.at - moment,
        topped_up_in=topup - moment,
        answers_before_look=line.answers_after(moment, poll.at),
        poll_was_due_in=poll.due - moment,
        refused=line.refused_between(moment, math.inf),
    )


def summarize(line: ActTimeline, out: TextIO) -> None:
    """What the answers bought, in measured figures."""
    print("\nMeasured:", file=out)
    campaign = reaction(line, line.burst)
    if campaign is not None:
        print(
            f"  the campaign: the guard read the balance {campaign.looked_in:.2f} s after it "
            f"began ({campaign.answers_before_look} answers in) and its top-up reached Vonage "
            f"{campaign.topped_up_in:.2f} s after it began; "
            f"{line.refused_between(line.burst, line.emptied or math.inf)} messages refused. "
            f"Its next poll was due {campaign.poll_was_due_in:.0f} s after the campaign began.",
            file=out,
        )
    first_refusal = next((r for r in line.refusals if r >= line.emptied), None)
    refusal = reaction(line, first_refusal) if first_refusal is not None else None
    if refusal is not None:
        late = refusal.poll_was_due_in
        before = (
            "before the sender's next message"
            if refusal.answers_before_look == 0
            else f"{refusal.answers_before_look} messages later"
        )
        print(
            f"  the empty account: the guard read the balance {refusal.looked_in:.2f} s after "
            f"the first refused message ({before}) and its top-up reached Vonage "
            f"{refusal.topped_up_in:.2f} s after it; {refusal.refused} messages refused until "
            f"the credit showed. Polling alone would have looked {late:.0f} s after the "
            f"refusal: about {late * STEADY_RATE:.0f} messages refused at {STEADY_RATE:g} SMS/s.",
            file=out,
        )
    early = line.refused_between(0.0, line.emptied or math.inf)
    print(
        f"  {len(line.sent)} messages sent, {early} refused before the account was emptied; "
        f"{line.reads} get-balance calls, most of them watching {len(line.topups)} top-up "
        f"credits arrive; {line.topups_on_a_read} of the {len(line.topups)} top-ups followed a "
        "get-balance reading that called for it (a forwarded answer never moves money).",
        file=out,
        flush=True,
    )
