"""Top-up and lifecycle events -> channel-neutral notes. Pure: no I/O, no clock.

Each note answers, for someone who never read the code: what happened, the numbers behind it, and
what (if anything) a person must do now — in words: no exception class names, no HTTP status codes
for a refused payment, one rate unit, no balance "after" a top-up that does not show the credit.
Secrets never reach here unmasked: the policy is re-masked by key name (``format.safe_policy``).
Condition groups are worded in ``incident_text``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from topup_guard.config import env_name
from topup_guard.events import Outcome, Started, Stopped, TopUpFinished
from topup_guard.notify import format as f
from topup_guard.notify.note import Note, Paragraph, Scope, Severity

# Error names in an attempt's detail (``"TopUpRefusedError: POST /account/top-up: …"``) in words.
_MEANING = {
    "AutoReloadDisabledError": "Vonage refused the payment: auto-reload is not enabled on the "
    "account (Vonage switches it off after three failed payments)",
    "TopUpRefusedError": "Vonage refused the payment: charging the stored card or PayPal account "
    "failed",
    "AuthenticationError": "Vonage did not accept the guard's API key and secret",
    "RateLimitedError": "Vonage asked the guard to slow down on every try",
    "ValidationError": "Vonage rejected the request as invalid (is TOPUP_GUARD_TRX right?)",
    "ForbiddenError": "Vonage does not allow this account to top up",
    "NotFoundError": "Vonage does not know this account (VONAGE_API_KEY)",
    "RequestNotSentError": "the request never reached Vonage (no connection)",
    "LeaseLostError": "this replica lost the right to spend before sending",
}
_NOTHING_CHARGED = {"RateLimitedError", "RequestNotSentError", "LeaseLostError",
                    "TopUpRefusedError", "AutoReloadDisabledError"}  # fmt: skip
_ERROR_PREFIX = re.compile(r"^(?:rate limited by Vonage on every try: )?(\w+Error): (.*)$", re.S)
_CALL = re.compile(r"\b(?:GET|POST|PUT|DELETE|PATCH) /[\w/.-]*: ")
_STATUS = re.compile(r" ?\(HTTP (\d{3})\)")


def _status_words(match: re.Match[str]) -> str:
    return " (Vonage server error)" if match.group(1).startswith("5") else ""


def plain(text: str) -> str:
    """Text built elsewhere (details, reasons) as people should read it: rates per minute, no
    method/path of the call, no HTTP status codes."""
    return f.per_minute_text(_STATUS.sub(_status_words, _CALL.sub("", text))).strip()


def plain_detail(detail: str) -> str:
    """An attempt's detail in words: ``'TopUpRefusedError: POST …: topup failed (HTTP 401)'`` ->
    ``'Vonage refused the payment: … (Vonage said "topup failed"). Nothing was charged.'``."""
    match = _ERROR_PREFIX.match(detail.strip())
    if match is None:
        return plain(detail)
    name, said = match.group(1), plain(match.group(2))
    out = _MEANING.get(name, "Vonage did not accept the top-up")  # never the class name
    if said:
        out += f' (Vonage said "{said}")'
    return out + (". Nothing was charged." if name in _NOTHING_CHARGED else ".")


# --- top-ups -------------------------------------------------------------------------------


def topup(event: TopUpFinished, scope: Scope, suppressed: int = 0) -> Note:
    """One finished top-up attempt (or a dry-run decision); ``suppressed`` counts dry-run
    decisions folded into this one by the dispatcher's throttle."""
    if event.outcome is Outcome.SUCCEEDED:
        return _topup_succeeded(event, scope)
    if event.outcome is Outcome.DRY_RUN:
        return _topup_dry_run(event, scope, suppressed)
    return topups_not_done([event], scope)


def _forecast_fields(event: TopUpFinished) -> tuple[tuple[str, str], ...]:
    return (
        ("Spend rate", f.rate(event.rate)),
        ("Exhaustion was forecast", f.exhaustion(event.time_to_exhaustion)),
    )


def _footer(event: TopUpFinished) -> tuple[str, ...]:
    evidence = f" · evidence: {event.evidence}" if event.evidence else ""
    when = f.utc(event.wall)
    return (
        f"Why: {plain(event.reason)}",
        f"attempt #{event.attempt_id} · requests sent: {event.requests}{evidence}"
        + (f" · {when}" if when else ""),
    )


def credit_shows(event: TopUpFinished) -> bool:
    """Whether ``balance_after`` shows the credit (allowing for spend while it landed): the
    guard saw the step and the balance stands at least half the credit above where it was."""
    credited, after = event.credited, event.balance_after
    if credited is None or after is None or credited <= 0:
        return False
    return after >= event.balance_before + credited / 2


def _topup_succeeded(event: TopUpFinished, scope: Scope) -> Note:
    amount = event.credited if event.credited is not None else event.expected_amount
    title = f"Topped up {f.eur(amount)}" if amount is not None else "Topped up"
    if credit_shows(event):
        after = f.eur(event.balance_after)
        change = f"balance {f.eur(event.balance_before)} -> {after}"
    else:
        now = f" ({f.eur(event.balance_after)} now)" if event.balance_after is not None else ""
        after = f"credit on its way{now}"
        change = f"balance {f.eur(event.balance_before)}, credit on its way"
    summary = (
        f"{title}: {change}; spend {f.rate(event.rate)}, exhaustion was forecast "
        f"{f.exhaustion(event.time_to_exhaustion)}. Why: {plain(event.reason)}"
    )
    return Note(
        kind="topup_succeeded",
        severity=Severity.INFO,
        icon="✅",
        title=title,
        summary=summary,
        scope=scope,
        paragraphs=(Paragraph(plain(event.detail) or "The top-up was credited."),),
        fields=(
            ("Amount", f.eur(amount)),
            ("Balance before", f.eur(event.balance_before)),
            ("Balance after", after),
            *_forecast_fields(event),
        ),
        footer=_footer(event),
        wall=event.wall,
    )


def topups_not_done(events: Sequence[TopUpFinished], scope: Scope) -> Note:
    """Failed or unconfirmed top-ups (several, when they came within one group wait)."""
    last = events[-1]
    unconfirmed = any(e.outcome is Outcome.UNCONFIRMED for e in events)
    noun = "Top-up" if len(events) == 1 else f"{len(events)} top-ups"
    title = f"{noun} unconfirmed" if unconfirmed else f"{noun} failed"
    action = last.action_needed or "Nothing: the guard will retry by itself."
    what = topup_lines(events)
    summary = (
        f"{title}: {' '.join(what)} What to do now: {action} "
        f"(balance {f.eur(last.balance_before)}, spend {f.rate(last.rate)}, "
        f"exhaustion {f.exhaustion(last.time_to_exhaustion)})"
    )
    return Note(
        kind="topup_unconfirmed" if unconfirmed else "topup_failed",
        severity=Severity.WARNING if unconfirmed else Severity.ERROR,
        icon="⚠️" if unconfirmed else "❌",
        title=title,
        summary=summary,
        scope=scope,
        paragraphs=(
            Paragraph("\n".join(what), label="What happened"),
            Paragraph(action, label="What to do now"),
        ),
        fields=(
            ("Expected amount", f.eur(last.expected_amount)),
            ("Balance before", f.eur(last.balance_before)),
            ("Balance now", f.eur(last.balance_after)),
            *_forecast_fields(last),
        ),
        footer=_footer(last),
        wall=last.wall,
    )


def topup_lines(events: Sequence[TopUpFinished]) -> list[str]:
    """One line per attempt; identical explanations are said once with the attempt numbers."""
    by_text: dict[str, list[int]] = {}
    for e in events:
        by_text.setdefault(plain_detail(e.detail), []).append(e.attempt_id)
    lines = []
    for text, ids in by_text.items():
        which = "#" + ", #".join(str(i) for i in ids)
        lines.append(f"Attempt{'s' if len(ids) > 1 else ''} {which}: {text}")
    return lines


def _topup_dry_run(event: TopUpFinished, scope: Scope, suppressed: int) -> Note:
    what = f.eur(event.expected_amount) if event.expected_amount is not None else "once"
    title = f"DRY RUN — would have topped up {what}"
    more = (
        f" ({suppressed} more dry-run decision{'s' if suppressed != 1 else ''} since the last"
        " message were not posted.)"
        if suppressed
        else ""
    )
    summary = (
        f"{title}: balance {f.eur(event.balance_before)}, spend {f.rate(event.rate)}, "
        f"exhaustion {f.exhaustion(event.time_to_exhaustion)}. Why: {plain(event.reason)}. "
        f"No top-up was made (TOPUP_GUARD_DRY_RUN=true).{more}"
    )
    return Note(
        kind="topup_dry_run",
        severity=Severity.INFO,
        icon="🧪",
        title=title,
        summary=summary,
        scope=scope,
        paragraphs=(
            Paragraph("No top-up was made: the guard runs with TOPUP_GUARD_DRY_RUN=true." + more),
        ),
        fields=(("Balance", f.eur(event.balance_before)), *_forecast_fields(event)),
        footer=_footer(event),
        wall=event.wall,
    )


# --- lifecycle -----------------------------------------------------------------------------

_CAPS = ("max_topups_per_hour", "max_topups_per_day", "max_daily_amount")
# Started.coordination as the engine may report it (a class name) -> words for people.
_COORDINATION = {
    "SoleGuard": "single replica (SQLite ledger)",
    "RedisLease": "shared lease (Redis)",
}


def coordination_words(value: str) -> str:
    if value in _COORDINATION:
        return _COORDINATION[value]
    if re.fullmatch(r"[A-Z]\w*", value):  # another class name: never shown as such
        return "shared lease (Redis)" if "redis" in value.lower() else "single replica"
    return value


def _get(policy: Mapping[str, str], field: str) -> str:
    return policy.get(env_name(field), "?")


def _seconds(value: str) -> str:
    try:
        return f.duration(float(value))
    except ValueError:
        return value


def started(event: Started, scope: Scope) -> Note:
    policy = f.safe_policy(event.policy)
    amount = _get(policy, "topup_amount")
    coordination = coordination_words(event.coordination)
    fields = (
        ("Floor", f.eur_text(_get(policy, "min_balance"))),
        ("Top-up amount", "learnt from top-ups" if amount == "(unset)" else f.eur_text(amount)),
        (
            "Caps",
            f"{_get(policy, _CAPS[0])}/hour, {_get(policy, _CAPS[1])}/day, "
            f"{f.eur_text(_get(policy, _CAPS[2]))}/day",
        ),
        (
            "Breaker",
            f"opens after {_get(policy, 'breaker_threshold')} failed or unconfirmed top-ups "
            f"in a row, cooldown {_seconds(_get(policy, 'breaker_cooldown'))}",
        ),
        (
            "Polling",
            f"every {_seconds(_get(policy, 'poll_min'))} to "
            f"{_seconds(_get(policy, 'poll_interval'))}",
        ),
        ("Warning horizon", _seconds(_get(policy, "horizon"))),
        ("Dry run", "YES — no top-up will be made" if event.dry_run else "no"),
        ("Coordination", coordination),
    )
    mode = " (DRY RUN)" if event.dry_run else ""
    shown = dict(fields)
    summary = (
        f"topup-guard started{mode}: floor {shown['Floor']}, caps {shown['Caps']}, "
        f"dry run {'yes' if event.dry_run else 'no'}, coordination {coordination}"
    )
    return Note(
        kind="started",
        severity=Severity.INFO,
        icon="▶️",
        title=f"topup-guard started{mode}",
        summary=summary,
        scope=scope,
        paragraphs=(Paragraph("The guard is watching the balance with this policy:"),),
        fields=fields,
        listing="\n".join(f"{k}={v}" for k, v in sorted(policy.items())),
    )


def stopped(event: Stopped, scope: Scope) -> Note:
    return Note(
        kind="stopped",
        severity=Severity.INFO,
        icon="⏹️",
        title="topup-guard stopped",
        summary=f"topup-guard stopped: {event.reason}. The balance is no longer watched.",
        scope=scope,
        paragraphs=(
            Paragraph(event.reason, label="Reason"),
            Paragraph(
                "The balance is no longer watched; Vonage's own auto-reload (if enabled) is the "
                "only safety net until the guard runs again."
            ),
        ),
    )
