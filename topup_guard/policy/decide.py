"""What to do now: the top-up decision and when to look again. Pure: time is an argument.

The trigger. Top up when the balance is forecast to fall below ``min_balance`` before the guard
could act again — within the lead time ``next poll + top-up latency + safety margin`` — and not
earlier, so the balance does not bloat. The forecast is extrapolated from its sample to ``now``.

The circularity. The lead time depends on the next poll, and the next poll on how near the
trigger is. It is resolved in one pass: first choose the next poll as a third of the *slack* (the
seconds left before a top-up must be sent: time to the floor minus latency and margin), computed
at the burst rate ``max(rate, peak_rate)`` so a recent burst makes the guard look sooner; then
evaluate the trigger with that poll. Because the poll is at most a third of the slack (or
``poll_min``), this fires exactly when waiting ``poll_min`` more would be too late, and every
poll before that lands well ahead of the act-by point.

How many. ``k = ceil((min_balance - projected) / topup_amount)``, at least 1, at most what the caps
allow; one at a time while the amount is unknown, and one at a time while the forecast is thin
(confidence below ``THIN_CONFIDENCE``: two samples, a few seconds of data) so one odd reading at
start-up cannot buy several top-ups at once. ``wanted`` still reports the full k.

Idle wallets. Below the floor with nothing spent in the long window: no top-up (nobody is using
the money). Except at or below zero: a prepaid account with no money cannot send, so "no spend"
is then no evidence of idleness, and waiting for spend would wait forever.

Money on its way. Credits Vonage confirmed but the balance does not show yet are part of the
projection (``credit_in_flight``), so they are never bought twice. Credits in doubt (an ambiguous
answer: applied or not, the balance will tell) are counted too — *unless* the balance without
them would reach the floor before their verification ends: then exhaustion beats doubt, and the
guard tops up again as a new attempt (an extra credit stays in the balance; an empty balance
refuses messages). ``on_doubt="wait"`` keeps counting them whatever the forecast says.

Blocked. When a top-up is wanted but cannot be made (in flight, not the leader, auto-reload off,
breaker, caps, dry run — checked in that order, so a dry run reports "dry_run" only when the
top-up would otherwise really have been made) the decision WARNs if exhaustion is within
``horizon`` or the balance is under the floor, and otherwise is NOTHING (with ``blocked_by`` and
``wanted`` still filled in for logs). A dry run WARNs whenever it would have topped up: showing
that is its purpose. Far from the trigger but running out within ``horizon``: WARN only if the
guard could not act when the time comes (auto-reload off, breaker, caps, dry run); a top-up in
flight or another leader will act, so those stay quiet.

A fleet's bank. A primary account that funds subaccounts by transfer keeps, on top of its floor,
``reserve``: what this cycle's transfers take; and the fleet's flow (``draw_rate``, at its burst
``draw_peak``) is spent from it like its own, in the projection and in the headroom
(``fleet/guard.py``). A primary that sends nothing
itself but feeds a fleet is not an idle wallet; nor is a subaccount (``keep_floor_when_idle``):
moving money to it charges no card, and a campaign's first burst must find its floor there.
"""

from __future__ import annotations

import dataclasses
import enum
import math
from dataclasses import dataclass
from decimal import ROUND_CEILING, Decimal
from typing import TYPE_CHECKING

from topup_guard.policy.forecast import Forecast, time_to_level

if TYPE_CHECKING:
    from topup_guard.config import Settings

# Poll after this share of the slack: the poll after next still lands before the act-by point
# even if the burst rate rises by half meanwhile.
POLL_FRACTION = 1 / 3
# Money projections are clamped here: a wild rate must give a large number, never inf or NaN.
_MONEY_LIMIT = 1e15
# Below this forecast confidence, at most one top-up per decision.
THIN_CONFIDENCE = 0.25
_CENT = Decimal("0.0001")

Blocker = str  # "dry_run" | "auto_reload_off" | "caps" | "breaker" | "in_flight" | "not_leader"
_BLOCKER_TEXT = {
    "in_flight": "a top-up of unknown amount (or another process's) is still being settled",
    "not_leader": "another replica holds the spending lease",
    "auto_reload_off": "auto-reload is off, so a top-up would fail",
    "breaker": "the breaker is open after failed top-ups",
    "caps": "the top-up caps are used up",
    "dry_run": "dry run",
    "max_balance": "TOPUP_GUARD_MAX_BALANCE binds",
    "in_doubt": "a top-up is in doubt and TOPUP_GUARD_ON_DOUBT=wait",
}
# Blockers that mean the guard could not act later either (not just "someone else will").
_CANNOT_ACT_LATER = frozenset({"auto_reload_off", "breaker", "caps", "dry_run"})


class Action(enum.Enum):
    NOTHING = "nothing"
    WARN = "warn"
    TOP_UP = "top_up"


# Before the amount is known, the floor stands in for one top-up in hand while the balance
# would reach the floor within this long at the burst rate (the forecast's long window): a
# wallet that spends, not one that takes a day to move (``_headroom``).
STAND_IN_WITHIN_S = 3600.0


@dataclass(frozen=True, slots=True)
class PolicyParams:
    """The settings the policy reads, in their units (EUR, seconds)."""

    min_balance: Decimal
    horizon: float
    poll_min: float
    poll_interval: float
    topup_latency: float
    safety_margin: float
    on_doubt: str = "topup"  # "topup": exhaustion beats doubt; "wait": never buy while in doubt
    min_headroom: Decimal | None = None  # EUR kept in hand beyond the floor; None: one top-up
    max_balance: Decimal | None = None  # the most the guard builds up (headroom top-ups only)
    keep_floor_when_idle: bool = False  # a fleet's subaccount: a transfer costs no card charge,
    # so the floor is kept even for a wallet nobody spends from now

    @classmethod
    def from_settings(cls, settings: Settings) -> PolicyParams:
        return cls(
            min_balance=settings.min_balance,
            horizon=settings.horizon,
            poll_min=settings.poll_min,
            poll_interval=settings.poll_interval,
            topup_latency=settings.topup_latency,
            safety_margin=settings.safety_margin,
            on_doubt=settings.on_doubt,
            min_headroom=settings.min_headroom,
            max_balance=settings.max_balance,
        )


@dataclass(frozen=True, slots=True)
class GuardState:
    """What the engine knows besides the balance; see the module docstring for each blocker."""

    auto_reload: bool | None
    topup_amount: Decimal | None
    topups_allowed: int
    breaker_open: bool
    in_flight: bool
    may_spend: bool
    dry_run: bool
    credit_in_flight: Decimal = Decimal(0)  # confirmed by Vonage, not yet in the balance
    doubt_credit: Decimal = Decimal(0)  # may have been applied (ambiguous answers)
    doubt_ends_in: float | None = None  # seconds until the last doubtful attempt is settled
    latency: float | None = None  # the learnt credit latency, when it exceeds topup_latency
    remembered_rate: float = 0.0  # EUR/s this time of day brought on earlier days (burst memory)
    messages_refused: bool = False  # senders report out-of-credit refusals now: it is empty
    settling: bool | None = None  # credits expected to show soon: poll fast to see them (None:
    # whenever credit_in_flight > 0; False for confirmed credits long overdue, still counted)
    blind_for: float | None = None  # longest the guard goes unseeing; None: a poll interval.
    # Shorter while sender signals flow: every answer shows the balance, so the headroom need
    # only cover the time to react to one.
    reserve: Decimal = Decimal(0)  # EUR others draw from this balance right now (a fleet's
    # transfers of this cycle): kept on top of the floor, and no wallet it feeds is idle
    draw_rate: float = 0.0  # EUR/s others draw from this balance, sustained (a fleet's flow)
    draw_peak: float = 0.0  # ... and at its burst: spend of this balance like its own
    burst_pace: float = 0.0  # EUR/s of a burst the reading judge confirmed, still going on:
    # the forecast's 30-s peak window dilutes a burst seconds old, the judge's pace does not
    recurring_lump: Decimal = Decimal(0)  # the largest one-off debit of those that recur (two
    # or more lately: batch sends): kept out of the rate, yet the headroom must absorb the next


@dataclass(frozen=True, slots=True)
class Decision:
    action: Action
    count: int
    wanted: int
    reason: str
    next_poll_in: float
    blocked_by: str | None
    exhaustion_within_horizon: bool
    projected_balance: Decimal | None
    despite_doubt: bool = False  # a top-up made while another is in doubt (exhaustion beats it)


def lead_time(params: PolicyParams, next_poll_in: float, latency: float | None = None) -> float:
    """Seconds a top-up decided now must cover: until the next poll, plus the credit latency
    (configured, or the slower learnt one) and the margin."""
    credit_takes = max(params.topup_latency, latency or 0.0)
    return next_poll_in + credit_takes + params.safety_margin


def _credit_counted(
    f: Forecast, state: GuardState, params: PolicyParams, elapsed: float
) -> tuple[Decimal, str, bool]:
    """EUR on its way that the projection counts, a note for the reason, and whether a top-up
    now would be made despite doubt (exhaustion beats it)."""
    counted = state.credit_in_flight
    note = f"; {_eur(counted)} confirmed and on its way" if counted > 0 else ""
    if state.doubt_ends_in is None:
        return counted, note, False
    ends = max(0.0, state.doubt_ends_in)
    if params.on_doubt == "wait":
        return (
            counted + state.doubt_credit,
            note
            + (
                f"; {_eur(state.doubt_credit)} in doubt counted until verification ends in"
                f" {_secs(ends)} (TOPUP_GUARD_ON_DOUBT=wait)"
            ),
            False,
        )
    burst = max(f.rate, f.peak_rate)
    balance_now = f.balance - _money(f.rate * elapsed) + counted
    to_floor = time_to_level(balance_now, params.min_balance, burst)
    credit_takes = max(params.topup_latency, state.latency or 0.0)
    if to_floor <= ends + credit_takes + params.safety_margin:
        return (
            counted,
            note
            + (
                f"; a top-up is in doubt (verification ends in {_secs(ends)}) but the balance"
                f" reaches the floor in {_secs(to_floor)}: exhaustion beats doubt, not waiting"
            ),
            True,
        )
    return (
        counted + state.doubt_credit,
        note
        + (
            f"; {_eur(state.doubt_credit)} in doubt counted until verification ends in"
            f" {_secs(ends)}"
        ),
        False,
    )


def next_poll(
    forecast: Forecast, params: PolicyParams, now: float, burst: float | None = None
) -> float:
    """A third of the slack before a top-up must be sent, at the burst rate, clamped."""
    burst = max(forecast.rate, forecast.peak_rate) if burst is None else burst
    balance_now = forecast.balance - _money(forecast.rate * max(0.0, now - forecast.t))
    to_floor = time_to_level(balance_now, params.min_balance, burst)
    slack = to_floor - params.topup_latency - params.safety_margin
    return _clamp(slack * POLL_FRACTION, params.poll_min, params.poll_interval)


def decide(
    forecast: Forecast | None, state: GuardState, params: PolicyParams, now: float
) -> Decision:
    """The action to take at ``now`` and when to poll next; reads no clock, does no I/O."""
    if forecast is None:
        reason = "first balance sample: need two to forecast spend"
        return _decision(Action.NOTHING, reason, params.poll_min, exhaustion=False, projected=None)
    f = forecast
    if state.reserve > 0:
        # What the fleet draws right now is as untouchable as the floor itself.
        params = dataclasses.replace(params, min_balance=params.min_balance + state.reserve)
    if state.burst_pace > f.peak_rate:
        # A burst in progress is real danger: its pace is the peak until the windows catch up.
        f = dataclasses.replace(f, peak_rate=state.burst_pace)
    if state.draw_rate > 0 or state.draw_peak > 0:
        # The fleet's flow leaves this balance like its own spend: projected, and headroom.
        rate = f.rate + state.draw_rate
        f = dataclasses.replace(
            f,
            rate=rate,
            peak_rate=max(f.peak_rate, f.rate) + max(state.draw_peak, state.draw_rate),
            time_to_exhaustion=time_to_level(f.balance, Decimal(0), rate),
        )
    elapsed = max(0.0, now - f.t)
    settling = state.credit_in_flight > 0 if state.settling is None else state.settling
    waiting = state.in_flight or settling or state.doubt_ends_in is not None
    counted, doubt_note, despite = _credit_counted(f, state, params, elapsed)
    tte = (
        time_to_level(f.balance + counted, Decimal(0), f.rate) if counted else f.time_to_exhaustion
    )
    exhaustion = tte - elapsed <= params.horizon
    below = f.balance + counted < params.min_balance

    hold, burst, level = _headroom(f, state, params)
    available = f.balance - _money(f.rate * elapsed) + counted
    short = f.rate > 0 and available < level  # cannot sleep a full poll interval
    # With headroom the guard sleeps a full poll interval; the projection is over that sleep.
    if waiting:
        poll = params.poll_min
    elif short:
        poll = next_poll(f, params, now)
    else:
        poll = params.poll_interval
    lead = lead_time(params, poll, state.latency)
    projected = f.balance - _money(f.rate * (elapsed + lead)) + counted
    numbers = _numbers(f, projected, params, lead) + doubt_note

    if state.messages_refused:
        # Messages are being refused for lack of credit: whatever the balance says, it cannot
        # pay — below the floor, and not an idle wallet.
        projected = min(projected, params.min_balance - _CENT)

    if projected >= params.min_balance and not short:
        blocker = _blocker(state) if exhaustion else None
        if blocker in _CANNOT_ACT_LATER:
            reason = (
                f"balance {_eur(f.balance)} runs out in {_secs(f.time_to_exhaustion - elapsed)}"
                f" at {_rate(f.rate)} (within the {_secs(params.horizon)} horizon) and the guard"
                f" cannot top up: {_BLOCKER_TEXT[str(blocker)]}"
            )
            return _decision(Action.WARN, reason, poll, exhaustion, projected, blocked_by=blocker)
        reason = f"healthy: {numbers}; next poll in {_secs(poll)}"
        return _decision(Action.NOTHING, reason, poll, exhaustion, projected)

    idle_exempt = (
        state.messages_refused
        or state.reserve > 0
        or state.draw_rate > 0
        or params.keep_floor_when_idle
    )
    if f.rate <= 0 and f.balance > 0 and not idle_exempt:
        reason = (
            f"balance {_eur(f.balance)} is below floor {_eur(params.min_balance)} but nothing"
            " was spent recently: not topping up an idle wallet"
        )
        return _decision(Action.NOTHING, reason, poll, exhaustion, projected)

    urgent = projected < params.min_balance
    for_floor = _topups_needed(params.min_balance - projected, state.topup_amount) if urgent else 0
    for_headroom = _topups_needed(level - available, state.topup_amount) if short else 0
    wanted = max(for_floor, for_headroom, 1)
    room = _room(params, available, state.topup_amount)
    blocker = _blocker(state)
    in_doubt = state.doubt_ends_in is not None
    if blocker is None and in_doubt and params.on_doubt == "wait":
        blocker = "in_doubt"  # the cautious mode: nothing new while a top-up is in doubt
    despite = despite or (blocker is None and in_doubt)  # a new attempt beside the doubtful one
    if blocker is None and not urgent and room is not None and room < 1:
        blocker = "max_balance"
    headroom_text = (
        f"; keeping {_eur(level)} (floor + {_rate(burst)} over {_secs(hold)}, at least"
        f" {_eur(level - params.min_balance)} in hand) so the next poll can wait"
        f" {_secs(params.poll_interval)}"
    )
    numbers += headroom_text
    if blocker is None:
        count = min(wanted, state.topups_allowed)
        capped = f" (wanted {wanted}; caps allow {count})" if count < wanted else ""
        if room is not None and count > max(room, for_floor, 1 if urgent else 0):
            count = max(room, for_floor, 1 if urgent else 0)
            capped = f" (wanted {wanted}; TOPUP_GUARD_MAX_BALANCE allows {count})"
        step = max(for_floor, 1) + 1  # the floor's need at once, the headroom one more a time
        if count > step:
            count = step
            capped = f" (wanted {wanted}; {step} now, more once the next reading confirms the rate)"
        if count > 1 and f.confidence < THIN_CONFIDENCE:
            count = 1
            capped = f" (wanted {wanted}; one at a time: few readings yet, confidence"
            capped += f" {f.confidence:.2f})"
        reason = f"{numbers}; topping up {count} × {_amount(state)}{capped}"
        return _decision(
            Action.TOP_UP,
            reason,
            params.poll_min,
            exhaustion,
            projected,
            count=count,
            wanted=wanted,
            despite_doubt=despite,
        )
    poll = params.poll_min if waiting else next_poll(f, params, now, burst)
    if not urgent:
        # Short of headroom only: nothing is at risk before the next (faster) poll.
        reason = (
            f"{numbers}; would top up {wanted} × {_amount(state)} for headroom but"
            f" {_BLOCKER_TEXT[blocker]}; polling every {_secs(poll)} instead"
        )
        warn = blocker == "dry_run" or (exhaustion and blocker in _CANNOT_ACT_LATER)
        action = Action.WARN if warn else Action.NOTHING
        return _decision(action, reason, poll, exhaustion, projected, wanted=wanted,
                         blocked_by=blocker)  # fmt: skip
    reason = f"{numbers}; would top up {wanted} × {_amount(state)} but {_BLOCKER_TEXT[blocker]}"
    warn = exhaustion or below or blocker == "dry_run"
    action = Action.WARN if warn else Action.NOTHING
    return _decision(action, reason, poll, exhaustion, projected, wanted=wanted, blocked_by=blocker)


def _headroom(f: Forecast, state: GuardState, params: PolicyParams) -> tuple[float, float, Decimal]:
    """(hold, burst rate, level): the balance that lets the guard sleep a full poll interval.

    ``hold`` is how long money can leave unseen: the poll interval, the credit latency and the
    margin. ``burst`` is the worst rate in view: now, the recent peak, and what this time of day
    has brought on earlier days (burst memory). The level is the floor plus what that rate could
    spend in ``hold``, or the largest one-off debit of those that recur if more (a batch send
    is kept out of the rate, but the next one comes all the same) — and at least
    ``min_headroom`` (by default one top-up amount: the unit of money the guard moves, so a
    burst of that size inside one poll interval is absorbed unseen). Before any credit has shown
    the amount, the floor stands in for it while the balance would reach the floor within the
    hour (``STAND_IN_WITHIN_S``): the first burst of a kind must not find the balance resting
    on the floor just because the guard has not bought anything yet (a quiet wallet keeps no
    stand-in).
    """
    blind = params.poll_interval if state.blind_for is None else state.blind_for
    hold = blind + max(params.topup_latency, state.latency or 0.0) + params.safety_margin
    burst = max(f.rate, f.peak_rate, state.remembered_rate)
    cover = max(_money(burst * hold), state.recurring_lump)
    if params.min_headroom is not None:
        floor_in_hand = params.min_headroom
    elif state.topup_amount is not None:
        floor_in_hand = state.topup_amount
    elif time_to_level(f.balance, params.min_balance, burst) <= STAND_IN_WITHIN_S:
        floor_in_hand = params.min_balance  # spend in earnest and no amount known yet
    else:
        floor_in_hand = Decimal(0)  # a quiet wallet is not topped up for a stand-in
    reserve = max(cover, floor_in_hand)
    return hold, burst, params.min_balance + reserve


def _room(params: PolicyParams, available: Decimal, amount: Decimal | None) -> int | None:
    """How many top-ups TOPUP_GUARD_MAX_BALANCE still allows (None: no limit set)."""
    if params.max_balance is None:
        return None
    if amount is None or amount <= 0:
        return 1 if available < params.max_balance else 0
    return max(0, int((params.max_balance - available) // amount))


def _decision(
    action: Action,
    reason: str,
    next_poll_in: float,
    exhaustion: bool,
    projected: Decimal | None,
    *,
    count: int = 0,
    wanted: int = 0,
    blocked_by: str | None = None,
    despite_doubt: bool = False,
) -> Decision:
    return Decision(
        action=action,
        count=count,
        wanted=wanted,
        reason=reason,
        next_poll_in=next_poll_in,
        blocked_by=blocked_by,
        exhaustion_within_horizon=exhaustion,
        projected_balance=projected,
        despite_doubt=despite_doubt,
    )


def _blocker(state: GuardState) -> str | None:
    if state.in_flight:
        return "in_flight"
    if not state.may_spend:
        return "not_leader"
    if state.auto_reload is False:  # None (not reported) is tried; a refusal trips the breaker
        return "auto_reload_off"
    if state.breaker_open:
        return "breaker"
    if state.topups_allowed <= 0:
        return "caps"
    if state.dry_run:
        return "dry_run"
    return None


def _topups_needed(deficit: Decimal, amount: Decimal | None) -> int:
    if amount is None or amount <= 0:
        return 1
    return max(1, int((deficit / amount).to_integral_value(rounding=ROUND_CEILING)))


def _numbers(f: Forecast, projected: Decimal, params: PolicyParams, lead: float) -> str:
    where = "below" if projected < params.min_balance else "above"
    burst = f" (burst {_rate(f.peak_rate)})" if f.peak_rate > f.rate else ""
    return (
        f"balance {_eur(f.balance)} falls to {_eur(projected)} ({where} floor"
        f" {_eur(params.min_balance)}) within {_secs(lead)} at {_rate(f.rate)}{burst}"
    )


def _money(value: float) -> Decimal:
    if math.isnan(value):
        value = _MONEY_LIMIT
    value = max(-_MONEY_LIMIT, min(_MONEY_LIMIT, value))
    return Decimal(value).quantize(_CENT)


def _clamp(value: float, low: float, high: float) -> float:
    if math.isnan(value):
        return low
    return max(low, min(high, value))


def _amount(state: GuardState) -> str:
    return "(amount unknown)" if state.topup_amount is None else _eur(state.topup_amount)


def _eur(value: Decimal) -> str:
    return f"{value:.2f} EUR"


def _rate(value: float) -> str:
    return f"{value:.3g} EUR/s"


def _secs(value: float) -> str:
    if math.isinf(value):
        return "never"
    if value < 0.05:
        return "now"
    if value < 10:
        return f"{value:.1f} s"
    return f"{value:.0f} s" if value < 7200 else f"{value / 3600:.1f} h"
