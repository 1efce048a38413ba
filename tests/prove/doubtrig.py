"""The real engine over real sockets on virtual time, with a script: the issue 9/10 proofs' rig.

Like ``netrig`` (the engine, the VonageClient and the simulator share one ``VirtualClock``), but
the guard runs with the product's own defaults unless a test says otherwise, the simulated
account is built per test (amount, Vonage's own auto-reload timing), and a ``Script`` can act at
chosen moments: at a simulated time (a one-off debit, a burst, a credit delay), or just before /
after the n-th top-up POST (a fault for that very request). ``Rewriter`` sits on the wire in front
of the simulator for the one answer the simulator cannot give: a top-up *applied* whose answer is
HTTP 200 carrying ``"error-code": "500"``.

``Outcome`` holds the money's truth (the simulated account: credits applied, demand refused) next
to the ledger's (every attempt's latest state, credited, evidence), so a test asserts both.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from tests.conftest import DEMO_CREDENTIALS
from topup_guard import limits
from topup_guard.clock import VirtualClock
from topup_guard.config import DEMO_API_KEY, DEMO_API_SECRET, DEMO_TRX, Settings, load_settings
from topup_guard.engine import Engine
from topup_guard.events import PollCompleted, Recorder, TopUpFinished
from topup_guard.ledger.base import Attempt, AttemptState
from topup_guard.ledger.sqlite import SqliteLedger
from topup_guard.model import Balance
from topup_guard.sim import RunningSimulator, Scenario, start_simulator
from topup_guard.sim.context import CONTEXT, SimContext
from topup_guard.sim.faults import Fault, parse_fault
from topup_guard.vonage.client import VonageClient

# Real seconds; long enough that a loaded machine never times out a served answer (0.3 s did);
# a held answer (``timeout_after``) is held half as long again.
HTTP_TIMEOUT = 1.0
NEVER = 1e9  # Vonage's own auto-reload check interval when a test wants none
PostStep = Fault | Callable[[SimContext], None]


def sim_fault(endpoint: str, kind: str, count: int = 1, **extra: Any) -> Fault:
    spec: dict[str, Any] = {"endpoint": endpoint, "kind": kind, "count": count}
    spec.setdefault("delay", 1.5 if kind == "timeout_after" else 30.0)
    spec.setdefault("retry_after", 0.0)
    spec.update(extra)
    return parse_fault(spec)


def guard_settings(url: str, state: Path, **env: str | None) -> Settings:
    """The product's defaults, pointed at the simulator; ``env`` keys are TOPUP_GUARD_* suffixes
    (``poll_min="0.5"``), ``None`` leaves a variable unset."""
    base: dict[str, str] = {
        "VONAGE_API_KEY": DEMO_API_KEY,
        "VONAGE_API_SECRET": DEMO_API_SECRET,
        "TOPUP_GUARD_TRX": DEMO_TRX,
        "TOPUP_GUARD_REST_URL": url,
        "TOPUP_GUARD_API_URL": url,
        "TOPUP_GUARD_STATE_PATH": str(state),
    }
    for key, value in env.items():
        name = f"TOPUP_GUARD_{key.upper()}"
        if value is None:
            base.pop(name, None)
        else:
            base[name] = value
    return load_settings(base)


@dataclass
class Script:
    """What happens to the account while the guard runs."""

    at: list[tuple[float, Callable[[SimContext], None]]] = field(default_factory=list)
    # n-th POST (1-based): faults for it, or actions (a credit delay for that very top-up)
    before_post: dict[int, list[Fault | Callable[[SimContext], None]]] = field(default_factory=dict)
    after_post: dict[int, Callable[[SimContext], None]] = field(default_factory=dict)

    def due(self, ctx: SimContext, now: float) -> None:
        keep = []
        for t, act in self.at:
            if t <= now:
                act(ctx)
            else:
                keep.append((t, act))
        self.at = keep


def control(**values: Any) -> Callable[[SimContext], None]:
    """An action that sets the account like ``POST /_sim/control`` would."""

    def act(ctx: SimContext) -> None:
        t, a = ctx.advance(), ctx.account
        if "spend_rate" in values:
            a.set_spend_rate(Decimal(str(values["spend_rate"])), t)
        if "debit" in values:
            a.one_off_debit(Decimal(str(values["debit"])), t)
        if "credit_delay_s" in values:
            a.credit_delay_s = float(values["credit_delay_s"])
        if "balance" in values:
            a.set_balance(Decimal(str(values["balance"])), t)

    return act


def add_faults(*faults: Fault) -> Callable[[SimContext], None]:
    def act(ctx: SimContext) -> None:
        for f in faults:
            ctx.faults.add(f)

    return act


@dataclass
class Scripted:
    """The client, with the script run before every call (on the shared virtual clock)."""

    client: VonageClient
    ctx: SimContext
    clock: VirtualClock
    script: Script
    posts: int = 0
    reads: int = 0
    read_errors: int = 0
    post_wall: list[float] = field(default_factory=list)  # real seconds each POST took
    post_virtual: list[float] = field(default_factory=list)  # virtual seconds each POST took
    read_times: list[float] = field(default_factory=list)  # virtual time of each good read
    post_times: list[float] = field(default_factory=list)  # virtual time each POST started

    async def get_balance(self) -> Balance:
        self.script.due(self.ctx, self.clock.now())
        try:
            balance = await self.client.get_balance()
        except Exception:
            self.read_errors += 1
            raise
        self.reads += 1
        self.read_times.append(self.clock.now())
        return balance

    async def top_up(self, trx: str) -> None:
        self.script.due(self.ctx, self.clock.now())
        self.posts += 1
        for f in self.script.before_post.get(self.posts, []):
            if isinstance(f, Fault):
                self.ctx.faults.add(f)
            else:
                f(self.ctx)
        started, virtual = time.monotonic(), self.clock.now()
        self.post_times.append(virtual)
        try:
            await self.client.top_up(trx)
        finally:
            self.post_wall.append(time.monotonic() - started)
            self.post_virtual.append(self.clock.now() - virtual)
            after = self.script.after_post.get(self.posts)
            if after is not None:
                after(self.ctx)


@dataclass
class Outcome:
    sim: RunningSimulator
    attempts: list[Attempt]
    events: Recorder
    engine: Engine
    api: Scripted
    unresolved: int
    settings: Settings
    charged_counted: Decimal  # the daily EUR cap's count at the end
    wall: float  # the guard's wall clock at the end (for the cap windows)
    peak_rate: Decimal  # the highest spend rate of the run (EUR/s)

    @property
    def account(self) -> Any:
        return self.sim.account

    @property
    def succeeded(self) -> list[Attempt]:
        return [a for a in self.attempts if a.state is AttemptState.SUCCEEDED]

    @property
    def applied(self) -> int:
        """Top-ups Vonage applied for the guard (charged; the credit may still be on its way)."""
        return len(self.account.topups)

    @property
    def autoreloads(self) -> int:
        return len(self.account.autoreloads)

    @property
    def refused(self) -> Decimal:
        return Decimal(self.account.failed_spend)

    def ctx_faults_left(self) -> int:
        """Injected faults not yet met."""
        return sum(int(f["count"]) for f in self.sim.app[CONTEXT].faults.active())

    def states(self) -> list[str]:
        return [a.state.value for a in self.attempts]

    def finished(self) -> list[TopUpFinished]:
        return [e for e in self.events.events if isinstance(e, TopUpFinished)]

    def polls(self) -> list[PollCompleted]:
        return [e for e in self.events.events if isinstance(e, PollCompleted)]

    def needed(self, initial: str, amount: str) -> int:
        """Top-ups the spend needed to keep, at the end, the level the policy is documented to
        keep (``decide._headroom``): the floor plus the larger of the run's peak rate over a whole
        poll interval + latency + margin, and ``TOPUP_GUARD_MIN_HEADROOM`` (default one top-up).
        """
        st = self.settings
        hold = Decimal(str(st.poll_interval + st.topup_latency + st.safety_margin))
        in_hand = st.min_headroom if st.min_headroom is not None else Decimal(amount)
        reserve = max(self.peak_rate * hold, in_hand)
        spent = Decimal(self.account.served_spend) + Decimal(
            sum((d for _, d in self.account.debits), Decimal(0))
        )
        short = spent + st.min_balance + reserve - Decimal(initial)
        short -= Decimal(sum((a for _, a in self.account.autoreloads), Decimal(0)))
        return max(0, math.ceil(short / Decimal(amount)))

    def describe(self) -> str:
        rows = [
            f"#{a.attempt_id} {a.state.value} credited={a.credited} evidence={a.evidence!r} "
            f"detail={a.detail!r} reason={a.reason!r}"
            for a in self.attempts
        ]
        acct = self.account
        return "\n".join(
            [
                f"applied={acct.topups} autoreloads={acct.autoreloads} "
                f"failed_spend={acct.failed_spend} balance={acct.balance} t={acct.now:.1f}",
                *rows,
            ]
        )


async def start_account(
    clock: VirtualClock,
    *,
    balance: str,
    amount: str,
    autoreload_threshold: str = "0",
    check_s: float = NEVER,
) -> RunningSimulator:
    scenario = Scenario(
        initial_balance=Decimal(balance),
        topup_amount=Decimal(amount),
        autoreload_threshold=Decimal(autoreload_threshold),
        autoreload_check_min_s=check_s,
        autoreload_check_max_s=check_s,
        topup_latency_s=0.0,
        balance_latency_s=0.0,
    )
    return await start_simulator(
        "127.0.0.1", 0, scenario=scenario, credentials=DEMO_CREDENTIALS, clock=clock
    )


async def run(
    tmp: Path,
    *,
    balance: str,
    rate: str,
    amount: str,
    seconds: float,
    env: dict[str, str | None] | None = None,
    script: Script | None = None,
    faults: list[Fault] | None = None,
    autoreload_threshold: str = "0",
    check_s: float = NEVER,
    credit_delay_s: float = 0.0,
    rewrite_topups: set[int] | None = None,
    peak_rate: str | None = None,
) -> Outcome:
    """Run the guard ``seconds`` of virtual time against a fresh account spending ``rate``."""
    clock = VirtualClock(start=0.0)
    sim = await start_account(clock, balance=balance, amount=amount,
                              autoreload_threshold=autoreload_threshold,
                              check_s=check_s)  # fmt: skip
    proxy = Rewriter(sim.url, rewrite_topups) if rewrite_topups else None
    try:
        ctx = sim.app[CONTEXT]
        sim.account.set_spend_rate(Decimal(rate), sim.account.now)
        sim.account.credit_delay_s = credit_delay_s
        for f in faults or []:
            ctx.faults.add(f)
        url = await proxy.start() if proxy is not None else sim.url
        st = guard_settings(url, tmp / "ledger.db", **(env or {}))
        ledger = SqliteLedger(st.state_path, account=DEMO_API_KEY)
        events = Recorder()
        async with VonageClient(DEMO_API_KEY, DEMO_API_SECRET, rest_url=url, api_url=url,
                                timeout=HTTP_TIMEOUT) as client:  # fmt: skip
            api = Scripted(client, ctx, clock, script or Script())
            engine = Engine(api=api, ledger=ledger, clock=clock, settings=st, sink=events)
            await asyncio.wait_for(engine.run(asyncio.Event(), until=seconds), timeout=60)
        ctx.advance()
        attempts = await ledger.latest(10_000)
        unresolved = len(await ledger.unresolved())
        use = limits.usage(attempts, clock.wall(), assumed_amount=engine.settlement.amount())
        await ledger.close()
        return Outcome(sim, attempts, events, engine, api, unresolved, st, use.amount_last_day,
                       clock.wall(), Decimal(peak_rate or rate))  # fmt: skip
    finally:
        if proxy is not None:
            await proxy.stop()
        await sim.stop()


class Rewriter:
    """A loopback proxy in front of the simulator: forwards every request; for the top-ups
    chosen, forwards (so Vonage applies it) and answers ``200 {"error-code": "500"}``."""

    def __init__(self, target: str, rewrite: set[int]) -> None:
        self.target = target
        self.rewrite = rewrite
        self.topups = 0
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self.url = ""

    async def start(self) -> str:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._forward)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self._session = aiohttp.ClientSession()
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}"
        return self.url

    async def _forward(self, request: web.Request) -> web.StreamResponse:
        assert self._session is not None
        body = await request.read()
        headers = {k: v for k, v in request.headers.items() if k.lower() not in ("host",)}
        async with self._session.request(
            request.method, self.target + request.path_qs, data=body, headers=headers
        ) as r:
            data = await r.read()
            status, ctype = r.status, r.headers.get("Content-Type", "application/json")
        if request.path == "/account/top-up":
            self.topups += 1
            if self.topups in self.rewrite and status == 200:
                return web.json_response(
                    {"error-code": "500", "error-code-label": "Internal Error"}, status=200
                )
        return web.Response(body=data, status=status, headers={"Content-Type": ctype})

    async def stop(self) -> None:
        if self._session is not None:
            await self._session.close()
        if self._runner is not None:
            await self._runner.cleanup()


def money_truth(o: Outcome, tally: Any, *, initial: str, amount: str, slack: int = 1) -> None:
    """The invariants of issues 9 and 10 for one run, asserted and tallied.

    - no attempt left PENDING/UNKNOWN;
    - every SUCCEEDED attempt is a credit the account received (Vonage's own auto-reloads
      count as received credits: the ledger may attribute one to an ambiguous answer, and says
      so), and every credit received for the guard is a SUCCEEDED attempt;
    - every ``credited`` figure in the ledger is the amount really credited;
    - no more credits than the spend needed, plus ``slack`` (a credit whose arrival was in doubt).
    """
    detail = o.describe()
    assert o.unresolved == 0, f"attempts left unresolved:\n{detail}"
    succeeded = len(o.succeeded)
    assert o.applied <= succeeded <= o.applied + o.autoreloads, (
        f"ledger: {succeeded} SUCCEEDED; account: {o.applied} top-ups applied,"
        f" {o.autoreloads} auto-reloads:\n{detail}"
    )
    by_balance = [a for a in o.succeeded if not (a.evidence or "").startswith("api")]
    assert succeeded - o.applied <= sum(
        1 for a in by_balance if "auto-reload" in (a.evidence or "")
    ), f"a SUCCEEDED attempt no credit explains:\n{detail}"
    wrong = [a for a in o.succeeded if a.credited is not None and a.credited != Decimal(amount)]
    assert not wrong, f"ledger credited figures that are not the real {amount} EUR:\n{detail}"
    needed = o.needed(initial, amount)
    credits = o.applied
    assert credits <= needed + slack, f"{credits} credits for a need of {needed}:\n{detail}"
    tally.add("runs")
    tally.add("refused_eur", float(o.refused))
    tally.add("credits_applied", credits)
    tally.add("autoreloads", o.autoreloads)
    tally.add("succeeded_in_ledger", succeeded)
    tally.add("attempts_audited", len(o.attempts))
    tally.add("unconfirmed", sum(1 for a in o.attempts if a.state is AttemptState.UNCONFIRMED))
    tally.add("failed", sum(1 for a in o.attempts if a.state is AttemptState.FAILED))
    tally.add("credits_needed", needed)
    tally.peak("most_credits_over_need", credits - needed)
