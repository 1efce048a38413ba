"""``topup-guard top-up``: one manual top-up through the very path the guard uses.

The same ``SafeTopUp`` (built by ``app.build_safe_topup``), against the store the configuration
selects (Redis when set: the lease is taken or the command refuses while a running guard holds
it), the same caps, breaker and dry run (``--force`` overrides them, and says so in the ledger),
and the same verification: Vonage's "200", then the credit step between consecutive readings
(``settling.Settlement``). It prints the amount and the verified outcome.
"""

from __future__ import annotations

import argparse
import math
import time
from decimal import Decimal
from typing import Any

from topup_guard import limits
from topup_guard.app import build_coordinator, build_safe_topup
from topup_guard.cli._common import (
    client_for,
    confirm,
    emit,
    err,
    eur,
    money_json,
    refuse_unconfirmed,
    say,
    settings_for_api,
)
from topup_guard.clock import SystemClock
from topup_guard.config import Settings
from topup_guard.errors import LedgerError, VonageError
from topup_guard.events import Outcome, TopUpFinished
from topup_guard.model import BalanceSample
from topup_guard.policy.credits import LatencyModel
from topup_guard.settling import Settlement
from topup_guard.topup import SafeTopUp, SendOutcome, TopUpRequest
from topup_guard.vonage.client import VonageClient


async def top_up(args: argparse.Namespace) -> int:
    settings = settings_for_api("trx")
    if (stop := refuse_unconfirmed(args, "top up")) is not None:
        return stop
    coordinator, ledger = build_coordinator(settings)
    try:
        await coordinator.start()
        if not coordinator.may_spend():
            err(
                "not topping up: another replica holds the spending lease (a guard is running "
                "on this account and tops up itself); stop it, or let it act"
            )
            return 1
        async with client_for(settings) as client:
            safe = build_safe_topup(settings, client, coordinator, ledger, SystemClock())
            return await _top_up(args, settings, client, safe)
    except LedgerError as exc:
        err(f"not topping up: {exc}")
        return 1
    finally:
        await coordinator.stop()
        await ledger.close()


async def _top_up(
    args: argparse.Namespace, settings: Settings, client: VonageClient, safe: SafeTopUp
) -> int:
    clock = SystemClock()
    before = await client.get_balance()
    read_at = clock.now()
    if before.auto_reload is False:
        err("auto-reload is off on this account; Vonage refuses top-ups until it is enabled")
        return 1
    latency = LatencyModel(settings.topup_latency, settings.settle_window, settings.poll_min)
    settlement = Settlement(safe, clock, latency, configured_amount=settings.topup_amount,
                            settle_window=settings.settle_window)  # fmt: skip
    blocked, amount = await _blockers(settings, safe, settlement)
    if blocked and not args.force:
        err(f"not topping up: {'; '.join(blocked)}. Pass --force to top up anyway (recorded)")
        return 1
    question = (
        f"The balance is {eur(before.value)}. Top up now? This charges the auto-reload "
        f"amount ({'unknown' if amount is None else eur(amount)}) to the stored payment method."
    )
    if (stop := confirm(args, question, "top up")) is not None:
        return stop
    reason = "manual top-up (CLI)"
    if blocked:
        reason += f"; forced with --force past: {'; '.join(blocked)}"
    req = TopUpRequest(before.value, amount, reason, rate=0.0, time_to_exhaustion=math.inf)
    result = await safe.send(req, dry_run=False)
    event = settlement.track(result, req)
    if event is None:
        say("Sent; watching the balance for the credit ...")
        event = await _watch(client, settlement, BalanceSample(read_at, before.value), clock)
    return _report(args, event, result.outcome)


async def _blockers(
    settings: Settings, safe: SafeTopUp, settlement: Settlement
) -> tuple[list[str], Decimal | None]:
    wall = time.time()
    attempts = await safe.ledger.since(wall - limits.DAY)
    settlement.learn_from_ledger(attempts)
    amount = settlement.amount()
    lim = limits.Limits(
        max_per_hour=settings.max_topups_per_hour,
        max_per_day=settings.max_topups_per_day,
        max_daily_amount=settings.max_daily_amount,
        breaker_threshold=settings.breaker_threshold,
        breaker_cooldown=settings.breaker_cooldown,
    )
    use = limits.usage(attempts, wall, assumed_amount=amount)
    blocked = []
    if limits.breaker_open(use, lim, wall):
        blocked.append(f"the breaker is open after {use.consecutive_failures} failed top-ups")
    if limits.topups_allowed(use, lim, amount) < 1:
        blocked.append(
            f"the caps are used up ({use.last_hour} this hour, {use.last_day} today,"
            f" {use.amount_last_day:.2f} EUR today)"
        )
    if settings.dry_run:
        blocked.append("TOPUP_GUARD_DRY_RUN is true")
    return blocked, amount


async def _watch(
    client: VonageClient, settlement: Settlement, prev: BalanceSample, clock: SystemClock
) -> TopUpFinished:
    """Poll until the step settles the attempt or its window ends (every wait bounded)."""
    rate = 0.0
    while True:
        await clock.sleep(max(settlement.latency.floor / 4, 0.5))
        try:
            balance = await client.get_balance()
        except VonageError as exc:
            say(f"balance read failed ({type(exc).__name__}); trying again")
        else:
            cur = BalanceSample(clock.now(), balance.value)
            if cur.balance < prev.balance:
                rate = float(prev.balance - cur.balance) / max(cur.t - prev.t, 1.0)
            events, _ = await settlement.on_step(prev, cur, rate)
            if events:
                return events[0]
            prev = cur
        for event in await settlement.expire():
            return event
        if not settlement.watch.in_flight():
            entry = settlement.watch.entries[0]
            a = next(x for x in await settlement.safe.ledger.latest(20)
                     if x.attempt_id == entry.attempt_id)  # fmt: skip
            return TopUpFinished(
                attempt_id=a.attempt_id, outcome=Outcome.SUCCEEDED,
                balance_before=a.balance_before, expected_amount=a.expected_amount,
                credited=None, balance_after=prev.balance, reason=a.reason, rate=0.0,
                time_to_exhaustion=math.inf,
                detail=settlement.missing.get(a.attempt_id, "credit not seen yet"),
                action_needed=None, requests=1, evidence="api",
            )  # fmt: skip


def _report(args: argparse.Namespace, event: TopUpFinished, sent: SendOutcome) -> int:
    data: dict[str, Any] = {
        "attempt_id": event.attempt_id,
        "outcome": event.outcome.value,
        "answer": sent.value,
        "balance_before": money_json(event.balance_before),
        "expected_amount": money_json(event.expected_amount),
        "credited": money_json(event.credited),
        "balance_after": money_json(event.balance_after),
        "evidence": event.evidence,
        "detail": event.detail,
    }
    if event.outcome is Outcome.SUCCEEDED and event.credited is not None:
        text = (
            f"Topped up {eur(event.credited)}: {eur(event.balance_before)} -> "
            f"{eur(event.balance_after or event.balance_before)} ({event.evidence})"
        )
    elif event.outcome is Outcome.SUCCEEDED:
        text = f"Vonage confirmed the top-up; {event.detail}"
    else:
        text = f"Top-up {event.outcome.value}: {event.detail}"
        if event.action_needed:
            text += f"\n{event.action_needed}"
        if not args.json:
            err(text)  # a failure is a message for a person, not output for a script
            return 3 if event.outcome is Outcome.UNCONFIRMED else 1
    emit(args, data, text)
    return (
        0
        if event.outcome is Outcome.SUCCEEDED
        else 3
        if event.outcome is Outcome.UNCONFIRMED
        else 1
    )
