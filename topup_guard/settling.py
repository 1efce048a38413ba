"""Settling top-ups from the balance: evidence in, ledger verdicts and events out.

The engine hands every believed pair of consecutive readings here; ``CreditWatch`` (pure) says
which attempts the step settles, and this class writes what that proves to the ledger through
``SafeTopUp.settle`` and returns the events to announce. It also learns, from the account itself,
the top-up amount (only from a clean step after Vonage's "200") and how long credits take.
"""

from __future__ import annotations

import logging
import os
import socket
from dataclasses import dataclass, replace
from decimal import Decimal

from topup_guard.clock import Clock
from topup_guard.events import Outcome, TopUpFinished
from topup_guard.ledger.base import Attempt, AttemptState
from topup_guard.model import BalanceSample
from topup_guard.policy.credits import (
    LATE_WINDOWS,
    PLAUSIBLE_MIN_TOPUP,
    TOLERANCE,
    AmountBounds,
    CreditMatch,
    CreditWatch,
    InFlight,
    LatencyModel,
    quantise,
)
from topup_guard.topup import (
    UNCONFIRMED_ACTION,
    SafeTopUp,
    SendOutcome,
    SendResult,
    TopUpRequest,
    finished,
)

log = logging.getLogger("topup_guard.settling")
# Seconds an attempt belongs to the process that began it, before anyone else may settle it: its
# POST (all retries) and its own verification fit in this, plus the settle window.
OWNER_GRACE = 45.0


@dataclass(frozen=True, slots=True)
class _Context:
    req: TopUpRequest
    requests: int


class Settlement:
    """The attempts this process is settling, and what it has learnt from them."""

    def __init__(
        self,
        safe: SafeTopUp,
        clock: Clock,
        latency: LatencyModel,
        *,
        configured_amount: Decimal | None,
        settle_window: float,
        autoreload_possible: bool = True,
    ) -> None:
        self.safe = safe
        self.watch = CreditWatch()
        self.latency = latency
        self._clock = clock
        self._configured = configured_amount
        self._settle_window = settle_window
        self._context: dict[int, _Context] = {}
        self.learnt_amount: Decimal | None = None
        self.unexplained_total = Decimal(0)
        self.missing: dict[int, str] = {}  # confirmed attempts whose credit never showed
        self.autoreload_possible = autoreload_possible
        self._foreign_seen: set[int] = set()
        self._adopted: set[int] = set()
        self.bounds = AmountBounds()

    # --- amounts ---------------------------------------------------------------------------
    def amount(self) -> Decimal | None:
        """The configured top-up amount, else the learnt one, else the least the credits seen
        so far prove it to be (a rise is a lower bound: spend only lowers a balance); None
        before any credit showed."""
        if self._configured is not None:
            return self._configured
        if self.learnt_amount is not None:
            return self.learnt_amount
        low = self.bounds.low
        return quantise(low) if low is not None and low >= PLAUSIBLE_MIN_TOPUP else None

    def learn_from_ledger(self, attempts: list[Attempt]) -> None:
        """After a restart: the latest amount a clean, confirmed step proved."""
        if self._configured is not None or self.learnt_amount is not None:
            return
        for a in reversed(attempts):
            clean = (a.evidence or "").startswith("api; clean")
            credited = a.credited
            succeeded = a.state is AttemptState.SUCCEEDED
            if succeeded and clean and credited is not None and credited >= PLAUSIBLE_MIN_TOPUP:
                self.learnt_amount = credited
                return

    # --- sending ---------------------------------------------------------------------------
    def track(self, result: SendResult, req: TopUpRequest) -> TopUpFinished | None:
        """Start watching a sent attempt; returns the event when it is already final."""
        a, now = result.attempt, result.answered_at
        wall = self._clock.wall()
        if result.outcome is SendOutcome.FAILED:
            return finished(a, Outcome.FAILED, wall=wall, detail=result.detail,
                            requests=result.requests, rate=req.rate,
                            time_to_exhaustion=req.time_to_exhaustion,
                            action=result.action)  # fmt: skip
        if result.outcome is SendOutcome.DRY_RUN:
            return finished(a, Outcome.DRY_RUN, wall=wall, detail=result.detail, rate=req.rate,
                            time_to_exhaustion=req.time_to_exhaustion)  # fmt: skip
        confirmed = result.outcome is SendOutcome.CONFIRMED
        window = self._settle_window if confirmed else self.latency.window()
        self._context[a.attempt_id] = _Context(req, result.requests)
        self.watch.add(
            InFlight(
                attempt_id=a.attempt_id,
                amount=req.expected_amount,
                sent_at=now,
                confirmed=confirmed,
                deadline=now + window,
                baseline=req.balance_before,
            )
        )
        return None

    # --- evidence --------------------------------------------------------------------------
    async def on_step(
        self, prev: BalanceSample, cur: BalanceSample, rate: float
    ) -> tuple[list[TopUpFinished], Decimal]:
        """Settle what the step proves; returns the events and the matched credit total."""
        verdict = self.watch.on_step(prev, cur, rate)
        events = [await self._settle_match(m, cur) for m in verdict.matches if m.entry.mine]
        if verdict.unexplained > 0:
            self.unexplained_total += verdict.unexplained
            log.info(
                "credit_unexplained",
                extra={
                    "credit_eur": str(verdict.unexplained),
                    "detail": "a rise no top-up of this guard explains (Vonage's auto-reload, a "
                    "refund, a manual payment); never learnt as the top-up amount",
                },
            )
        matched = sum((m.credited for m in verdict.matches), Decimal(0))
        return events, matched

    def _learn(self, m: CreditMatch) -> Decimal | None:
        """Learn the amount from a confirmed credit alone in its step; returns it when it was
        narrowed from all the credits so far (not read off this one clean step).

        Every such credit narrows ``bounds`` — a clean one too: its rise is a sure lower bound,
        and a later step whose spend estimate a burst outran (a rise of 98 read as a credit of
        98..98.5 while 100 was credited and 2 spent) must not overwrite an amount the rises
        already prove larger. A clean step's amount below what an earlier rise proves is such a
        misjudged step itself: the bounds decide instead."""
        narrowed = self.bounds.add(m.low, m.high)
        sure = self.bounds.low
        if (
            m.clean
            and m.credited >= PLAUSIBLE_MIN_TOPUP
            and (sure is None or m.credited >= sure - TOLERANCE)
        ):
            self.learnt_amount = m.credited
            return None
        if narrowed is not None:
            self.learnt_amount = narrowed
            return narrowed
        learnt = self.learnt_amount
        if learnt is not None and sure is not None and learnt < sure - TOLERANCE:
            self.learnt_amount = None  # proven too small: the least proven stands in
        return None

    async def _settle_match(self, m: CreditMatch, cur: BalanceSample) -> TopUpFinished:
        e = m.entry
        ctx = self._context.pop(e.attempt_id, None)
        self.missing.pop(e.attempt_id, None)
        if e.confirmed:
            self.latency.observe(m.latency)
            evidence = ("api; clean step: " if m.clean else "api; ") + m.evidence
            narrowed = self._learn(m) if m.alone and self._configured is None else None
            if narrowed is not None:
                if m.low - TOLERANCE <= narrowed <= m.high + TOLERANCE:
                    m = replace(m, credited=narrowed)
                evidence = (
                    f"api; clean: the amount is {narrowed} EUR, the one whole euro every"
                    f" confirmed credit so far allows; {m.evidence}"
                )
            detail = "Vonage confirmed the top-up and its credit showed in the balance"
        else:
            evidence = m.evidence
            if self.autoreload_possible:
                evidence += "; Vonage's own auto-reload adds the same amount and could explain it"
            detail = "the answer was ambiguous; the credit showed in the balance"
        attempt = await self._attempt(e.attempt_id)
        if attempt is None:
            raise LookupError(f"attempt {e.attempt_id} vanished from the ledger")
        done = await self.safe.settle(
            attempt, AttemptState.SUCCEEDED, credited=m.credited, evidence=evidence, detail=detail
        )
        req = ctx.req if ctx else None
        return finished(
            done, Outcome.SUCCEEDED, wall=self._clock.wall(), detail=detail,
            requests=ctx.requests if ctx else 0, rate=req.rate if req else 0.0,
            time_to_exhaustion=req.time_to_exhaustion if req else float("inf"),
            after=cur.balance, evidence=evidence,
        )  # fmt: skip

    async def expire(self) -> list[TopUpFinished]:
        """Attempts whose window ended without their credit showing."""
        events: list[TopUpFinished] = []
        for e in self.watch.expire(self._clock.now()):
            if not e.mine:
                self.watch.discard(e.attempt_id)  # its owner says what happened, not us
                continue
            waited = e.deadline - e.sent_at
            attempt = await self._attempt(e.attempt_id)
            if attempt is None:
                continue
            ctx = self._context.get(e.attempt_id)
            if e.confirmed:
                # Vonage said it was applied; the balance disagrees. Stop counting it as money
                # on its way (the policy may buy again) and say so loudly.
                text = (
                    f"Vonage confirmed top-up {e.attempt_id} but its credit has not shown in the"
                    f" balance after {waited:.0f} s"
                )
                self.missing[e.attempt_id] = text
                detail = text + "; no longer counted as on its way"
                await self.safe.settle(
                    attempt, AttemptState.SUCCEEDED, evidence="api", detail=detail
                )
                continue
            if attempt.state is not AttemptState.UNKNOWN:
                continue  # settled meanwhile by someone else
            detail = (
                f"{attempt.detail or 'the answer was ambiguous'}; no credit step showed within"
                f" {waited:.0f} s ({self.latency.window():.0f} s is three times the slowest credit"
                " seen, within the settle window)"
            )
            done = await self.safe.settle(attempt, AttemptState.UNCONFIRMED, detail=detail)
            events.append(
                finished(done, Outcome.UNCONFIRMED, wall=self._clock.wall(), detail=detail,
                         requests=ctx.requests if ctx else 0,
                         rate=ctx.req.rate if ctx else 0.0, action=UNCONFIRMED_ACTION)
            )  # fmt: skip
        return events

    # --- attempts left by others -------------------------------------------------------------
    def owns_or_orphan(self, attempt: Attempt) -> bool:
        """True when this process may settle ``attempt``: its own (this or an earlier life of
        this process), or its owner is gone (dead process on this host, or past its grace)."""
        me = self.safe.coordinator.holder
        if attempt.holder == me:
            return True
        host, _, pid = attempt.holder.rpartition(":")
        if host and host == socket.gethostname() and pid.isdigit():
            return not _alive(int(pid))
        age = self._clock.wall() - attempt.created_wall
        return age > OWNER_GRACE + self._settle_window

    async def adopt(
        self, attempts: list[Attempt], cur: BalanceSample, rate: float
    ) -> list[TopUpFinished]:
        """Take over attempts a process that is gone left unsettled (a crash, a dead holder):
        unresolved ones (in doubt) and ones Vonage confirmed whose credit was not seen yet.

        The earliest reading recorded before them and the reading now are two readings: a rise
        between them proves credits, as between consecutive ones — spent across a gap of unknown
        spend, so each is matched by a rise of at least half its amount, confirmed ones first.
        What is not matched is watched like a fresh attempt until its window (from its creation)
        ends.
        """
        now, wall = self._clock.now(), self._clock.wall()
        entries: list[tuple[Attempt, InFlight]] = []
        for a in sorted(attempts, key=lambda x: x.attempt_id):
            confirmed = (
                a.state is AttemptState.SUCCEEDED and a.credited is None and a.evidence == "api"
            )
            if not (a.state.unresolved or confirmed) or a.attempt_id in self._adopted:
                continue
            if a.attempt_id in self.watch or not self.owns_or_orphan(a):
                continue
            age = max(0.0, wall - a.created_wall)
            if confirmed and age > LATE_WINDOWS * self._settle_window:
                continue  # long settled one way or another; nothing left to learn
            self._adopted.add(a.attempt_id)
            if a.state is AttemptState.PENDING:
                a = await self.safe.settle(a, AttemptState.UNKNOWN,
                                           detail="found pending (the process that sent it is "
                                           "gone): verifying by balance")  # fmt: skip
            sent_at = now - age
            window = self._settle_window if confirmed else self.latency.window()
            entries.append((a, InFlight(
                attempt_id=a.attempt_id,
                amount=a.expected_amount or self.amount(),
                sent_at=sent_at,
                confirmed=confirmed,
                deadline=max(sent_at + window, now),
                baseline=a.balance_before,
            )))  # fmt: skip
        if not entries:
            return []
        probe = CreditWatch()
        for _, entry in entries:
            probe.add(entry)
        first = entries[0][1]
        before = BalanceSample(first.sent_at, entries[0][0].balance_before)
        verdict = probe.on_step(before, cur, rate, across_gap=True)
        matched = {m.entry.attempt_id for m in verdict.matches}
        for _, entry in entries:
            if entry.attempt_id not in matched:
                self.watch.add(entry)
        return [await self._settle_match(m, cur) for m in verdict.matches]

    def observe_foreign(self, attempts: list[Attempt]) -> None:
        """Count the money of another live process's top-up (a CLI's) as on its way or in doubt,
        so the loop does not buy it again; that process settles it, this one only watches."""
        now, wall = self._clock.now(), self._clock.wall()
        me = self.safe.coordinator.holder
        for a in attempts:
            if a.holder == me or a.attempt_id in self._foreign_seen or a.attempt_id in self.watch:
                continue
            confirmed = a.state is AttemptState.SUCCEEDED and a.credited is None
            confirmed = confirmed and a.evidence == "api"
            doubt = a.state is AttemptState.UNKNOWN and not self.owns_or_orphan(a)
            age = wall - a.updated_wall
            if not (confirmed or doubt) or age > self._settle_window:
                continue
            self._foreign_seen.add(a.attempt_id)
            sent_at = now - max(0.0, age)
            self.watch.add(
                InFlight(
                    attempt_id=a.attempt_id,
                    amount=a.expected_amount or self.amount(),
                    sent_at=sent_at,
                    confirmed=confirmed,
                    deadline=sent_at + (self._settle_window if confirmed else OWNER_GRACE),
                    baseline=a.balance_before,
                    mine=False,
                )
            )

    async def _attempt(self, attempt_id: int) -> Attempt | None:
        for a in reversed(await self.safe.ledger.latest(256)):
            if a.attempt_id == attempt_id:
                return a
        return None

    # --- the decision's view ---------------------------------------------------------------
    def doubt_ends_in(self) -> float | None:
        doubt = self.watch.doubtful()
        if not doubt:
            return None
        return max(e.deadline for e in doubt) - self._clock.now()


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
