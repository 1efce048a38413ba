"""Events -> Slack messages (Block Kit blocks plus a plain-text fallback). Pure: no I/O, no clock.

Each message answers, for someone who never read the code: what happened, the numbers behind it,
and what (if anything) a person must do now. ``text`` is what phones and screen readers show, so
it carries the essentials on its own. Secrets never reach here unmasked: the policy mapping is
re-masked by key name (``format.safe_policy``) in case a caller forgot.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from topup_guard.config import env_name
from topup_guard.events import (
    Condition,
    ConditionsChanged,
    Event,
    Outcome,
    PollCompleted,
    PollFailed,
    Started,
    Stopped,
    TopUpFinished,
)
from topup_guard.notify import format as f
from topup_guard.notify.conditions_text import CONDITION_TEXT


@dataclass(frozen=True, slots=True)
class SlackMessage:
    """One Slack post. ``kind`` is a stable label for logs and metrics (never shown to Slack)."""

    kind: str
    text: str
    blocks: list[f.Block]


def _message(kind: str, text: str, blocks: list[f.Block]) -> SlackMessage:
    return SlackMessage(kind=kind, text=f.cut(text, f.FALLBACK_MAX), blocks=blocks)


def render(event: Event) -> SlackMessage | None:
    """The message for a single event, or None for events that are not announced one by one.

    ``ConditionsChanged`` needs memory (start / repeat / recovered) and is handled by
    ``conditions.ConditionTracker``; polls are never announced.
    """
    if isinstance(event, Started):
        return started(event)
    if isinstance(event, Stopped):
        return stopped(event)
    if isinstance(event, TopUpFinished):
        return topup(event)
    if isinstance(event, PollCompleted | PollFailed | ConditionsChanged):
        return None
    return None  # pragma: no cover - Event is a closed union


# --- top-ups -------------------------------------------------------------------------------


def topup(event: TopUpFinished, suppressed: int = 0) -> SlackMessage:
    """One finished top-up attempt (or a dry-run decision); ``suppressed`` counts dry-run
    decisions folded into this one by the notifier's rate limit."""
    if event.outcome is Outcome.SUCCEEDED:
        return _topup_succeeded(event)
    if event.outcome is Outcome.DRY_RUN:
        return _topup_dry_run(event, suppressed)
    return _topup_not_done(event)


def _forecast_fields(event: TopUpFinished) -> dict[str, str]:
    return {
        "Spend rate": f.rate(event.rate),
        "Exhaustion was forecast": f.exhaustion(event.time_to_exhaustion),
    }


def _footer(event: TopUpFinished) -> f.Block:
    evidence = f" · evidence: {f.escape(event.evidence)}" if event.evidence else ""
    when = f.utc(event.wall)
    return f.context(
        f"*Why:* {f.escape(event.reason)}",
        f"attempt #{event.attempt_id} · requests sent: {event.requests}{evidence}"
        + (f" · {when}" if when else ""),
    )


def _topup_succeeded(event: TopUpFinished) -> SlackMessage:
    amount = event.credited if event.credited is not None else event.expected_amount
    title = f"Topped up {f.eur(amount)}" if amount is not None else "Topped up"
    fields = {
        "Amount": f.eur(amount),
        "Balance before": f.eur(event.balance_before),
        "Balance after": f.eur(event.balance_after),
        **_forecast_fields(event),
    }
    text = (
        f"{title}: balance {f.eur(event.balance_before)} -> {f.eur(event.balance_after)}; "
        f"spend {f.rate(event.rate)}, exhaustion was forecast "
        f"{f.exhaustion(event.time_to_exhaustion)}. Why: {event.reason}"
    )
    blocks = [
        f.header(f"✅ {title}"),
        f.section(f.escape(event.detail or "The top-up was credited."), fields),
        _footer(event),
    ]
    return _message("topup_succeeded", f.escape(text), blocks)


def _topup_not_done(event: TopUpFinished) -> SlackMessage:
    unconfirmed = event.outcome is Outcome.UNCONFIRMED
    title = "Top-up unconfirmed" if unconfirmed else "Top-up failed"
    icon = "⚠️" if unconfirmed else "❌"
    action = event.action_needed or "Nothing: the guard will retry by itself."
    fields = {
        "Expected amount": f.eur(event.expected_amount),
        "Balance before": f.eur(event.balance_before),
        "Balance now": f.eur(event.balance_after),
        **_forecast_fields(event),
    }
    text = (
        f"{title}: {event.detail} What to do now: {action} "
        f"(balance {f.eur(event.balance_before)}, spend {f.rate(event.rate)}, "
        f"exhaustion {f.exhaustion(event.time_to_exhaustion)})"
    )
    blocks = [
        f.header(f"{icon} {title}"),
        f.section(f"*What happened:* {f.escape(event.detail)}"),
        f.section(f"*What to do now:* {f.escape(action)}", fields),
        _footer(event),
    ]
    kind = "topup_unconfirmed" if unconfirmed else "topup_failed"
    return _message(kind, f.escape(text), blocks)


def _topup_dry_run(event: TopUpFinished, suppressed: int) -> SlackMessage:
    what = f.eur(event.expected_amount) if event.expected_amount is not None else "once"
    title = f"DRY RUN — would have topped up {what}"
    fields = {"Balance": f.eur(event.balance_before), **_forecast_fields(event)}
    more = (
        f" ({suppressed} more dry-run decision{'s' if suppressed != 1 else ''} since the last"
        " message were not posted.)"
        if suppressed
        else ""
    )
    text = (
        f"{title}: balance {f.eur(event.balance_before)}, spend {f.rate(event.rate)}, "
        f"exhaustion {f.exhaustion(event.time_to_exhaustion)}. Why: {event.reason}. "
        f"No top-up was made (TOPUP_GUARD_DRY_RUN=true).{more}"
    )
    body = "No top-up was made: the guard runs with `TOPUP_GUARD_DRY_RUN=true`." + f.escape(more)
    blocks = [f.header(f"🧪 {title}"), f.section(body, fields), _footer(event)]
    return _message("topup_dry_run", f.escape(text), blocks)


# --- lifecycle -----------------------------------------------------------------------------

# The settings worth a glance at start, by field name (shown by their variable names' values).
_CAPS = ("max_topups_per_hour", "max_topups_per_day", "max_daily_amount")


def _get(policy: Mapping[str, str], field: str) -> str:
    return policy.get(env_name(field), "?")


def started(event: Started) -> SlackMessage:
    policy = f.safe_policy(event.policy)
    amount = _get(policy, "topup_amount")
    fields = {
        "Floor": f.eur_text(_get(policy, "min_balance")),
        "Top-up amount": "learnt from top-ups" if amount == "(unset)" else f.eur_text(amount),
        "Caps": (
            f"{_get(policy, _CAPS[0])}/hour, {_get(policy, _CAPS[1])}/day, "
            f"{f.eur_text(_get(policy, _CAPS[2]))}/day"
        ),
        "Breaker": (
            f"opens after {_get(policy, 'breaker_threshold')} failed or unconfirmed top-ups "
            "in a row, "
            f"cooldown {_seconds(_get(policy, 'breaker_cooldown'))}"
        ),
        "Polling": (
            f"every {_seconds(_get(policy, 'poll_min'))} to "
            f"{_seconds(_get(policy, 'poll_interval'))}"
        ),
        "Warning horizon": _seconds(_get(policy, "horizon")),
        "Dry run": "YES — no top-up will be made" if event.dry_run else "no",
        "Coordination": event.coordination,
    }
    mode = " (DRY RUN)" if event.dry_run else ""
    text = (
        f"topup-guard started{mode}: floor {fields['Floor']}, caps {fields['Caps']}, "
        f"dry run {'yes' if event.dry_run else 'no'}, coordination {event.coordination}"
    )
    listing = "\n".join(f"{k}={v}" for k, v in sorted(policy.items()))
    blocks = [
        f.header(f"▶️ topup-guard started{mode}"),
        f.section("The guard is watching the balance with this policy:", fields),
        f.section(f.cut("*All settings*\n```" + f.escape(listing), f.SECTION_TEXT_MAX - 3) + "```"),
    ]
    return _message("started", f.escape(text), blocks)


def _seconds(value: str) -> str:
    try:
        return f.duration(float(value))
    except ValueError:
        return value


def stopped(event: Stopped) -> SlackMessage:
    text = f"topup-guard stopped: {event.reason}. The balance is no longer watched."
    blocks = [
        f.header("⏹️ topup-guard stopped"),
        f.section(
            f"*Reason:* {f.escape(event.reason)}\nThe balance is no longer watched; Vonage's own "
            "auto-reload (if enabled) is the only safety net until the guard runs again."
        ),
    ]
    return _message("stopped", f.escape(text), blocks)


# --- conditions ----------------------------------------------------------------------------


def condition_started(condition: Condition, detail: str, wall: float = 0.0) -> SlackMessage:
    info = CONDITION_TEXT[condition]
    text = f"{info.title}: {detail} What to do: {info.action}"
    blocks = [
        f.header(f"{info.icon} {info.title}"),
        f.section(f"{f.escape(detail)}\n\n*What to do:* {f.escape(info.action)}"),
        f.context(f"condition `{condition.value}` started", f.utc(wall)),
    ]
    return _message(f"condition_{condition.value}", f.escape(text), blocks)


def condition_repeated(
    condition: Condition, detail: str, lasted: float, wall: float = 0.0
) -> SlackMessage:
    info = CONDITION_TEXT[condition]
    since = f.duration(lasted)
    text = f"Still: {info.title} (for {since}): {detail} What to do: {info.action}"
    blocks = [
        f.header(f"🔁 Still: {info.title}"),
        f.section(f"{f.escape(detail)}\n\n*What to do:* {f.escape(info.action)}"),
        f.context(f"condition `{condition.value}` active for {since}", f.utc(wall)),
    ]
    return _message(f"condition_{condition.value}_repeat", f.escape(text), blocks)


def condition_recovered(condition: Condition, lasted: float, wall: float = 0.0) -> SlackMessage:
    info = CONDITION_TEXT[condition]
    since = f.duration(lasted)
    text = f'Recovered: {info.recovered} ("{info.title}" lasted {since})'
    blocks = [
        f.header(f"🟢 Recovered: {info.title}"),
        f.section(f"{f.escape(info.recovered)} The condition lasted {since}."),
        f.context(f"condition `{condition.value}` ended", f.utc(wall)),
    ]
    return _message(f"condition_{condition.value}_recovered", f.escape(text), blocks)
