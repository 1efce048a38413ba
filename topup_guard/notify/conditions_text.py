"""What each condition means to a person: a title, what to do now, and what 'recovered' means.

Kept apart from the rendering so the wording can be reviewed by the people who run the guard
without reading channel code. Every ``Condition`` must have an entry (a test checks it). When a
condition clears by itself (breaker, caps) the message says when, from the engine's
``clears_at``; the action here never stands in for that time.
"""

from __future__ import annotations

from dataclasses import dataclass

from topup_guard.events import Condition
from topup_guard.notify.note import Severity


@dataclass(frozen=True, slots=True)
class ConditionText:
    icon: str
    title: str
    action: str  # what a person should do while the condition lasts
    recovered: str  # one sentence for the message when it ends
    severity: Severity = Severity.CRITICAL  # as the root of a group


CONDITION_TEXT: dict[Condition, ConditionText] = {
    Condition.EXHAUSTION_FORECAST: ConditionText(
        icon="⏳",
        title="Balance forecast to run out",
        action=(
            "The guard cannot top up right now (see the other alerts for why). If SMS must keep "
            "flowing, add credit by hand in the Vonage dashboard."
        ),
        recovered="The balance is no longer forecast to run out within the horizon.",
    ),
    Condition.LOW_BALANCE: ConditionText(
        icon="🔻",
        title="Balance below the floor",
        action=(
            "Watch for a top-up message. If none follows, check the other alerts and add credit "
            "by hand in the Vonage dashboard."
        ),
        recovered="The balance is back above the floor (TOPUP_GUARD_MIN_BALANCE).",
        severity=Severity.WARNING,
    ),
    Condition.AUTORELOAD_DISABLED: ConditionText(
        icon="⛔",
        title="Auto-reload is disabled: the guard cannot top up",
        action=(
            "In the Vonage dashboard, make a manual payment with auto-reload switched on, then "
            "set TOPUP_GUARD_TRX to that payment's reference and restart the guard."
        ),
        recovered="Vonage reports auto-reload enabled again; top-ups can work.",
    ),
    Condition.CAP_REACHED: ConditionText(
        icon="🛑",
        title="Top-up cap reached",
        action=(
            "Check whether the spend is expected; if it is, raise "
            "TOPUP_GUARD_MAX_TOPUPS_PER_HOUR / _PER_DAY / TOPUP_GUARD_MAX_DAILY_AMOUNT, otherwise "
            "find what is sending the SMS."
        ),
        recovered="The top-up caps have room again.",
        severity=Severity.ERROR,
    ),
    Condition.BREAKER_OPEN: ConditionText(
        icon="🚨",
        title="Circuit breaker open: top-ups paused",
        action=(
            "Several top-ups in a row failed or could not be confirmed. Compare the ledger with "
            "the payment history in the Vonage dashboard before anything else."
        ),
        recovered="The circuit breaker closed; top-ups are allowed again.",
    ),
    Condition.UNCONFIRMED_TOPUP: ConditionText(
        icon="❓",
        title="A top-up could not be confirmed",
        action=(
            "Check the payment history in the Vonage dashboard for this top-up: it may or may "
            "not have been charged. The guard will not count on it."
        ),
        recovered="No top-up awaits confirmation any more.",
        severity=Severity.ERROR,
    ),
    Condition.POLL_FAILING: ConditionText(
        icon="📡",
        title="The balance cannot be read",
        action=(
            "The guard is blind and will not top up. Check the network path to Vonage and "
            "the credentials (VONAGE_API_KEY / VONAGE_API_SECRET); see the guard's logs."
        ),
        recovered="The balance can be read again.",
    ),
    Condition.COORDINATION_DOWN: ConditionText(
        icon="🔗",
        title="Coordination store unreachable: nobody may top up",
        action=(
            "No replica will top up until the shared store (Redis, TOPUP_GUARD_REDIS_URL) is "
            "reachable again. Check the Redis server and the network to it."
        ),
        recovered="The coordination store is reachable again.",
    ),
    Condition.CREDIT_MISSING: ConditionText(
        icon="❓",
        title="A confirmed top-up has not shown in the balance",
        action=(
            "Vonage answered that the top-up was applied, but the balance never rose by it. Check "
            "the Vonage dashboard's payments; the guard no longer counts that credit as on its "
            "way and tops up again only if the balance needs it."
        ),
        recovered="The missing credit showed in the balance after all.",
    ),
    Condition.BALANCE_MISREAD: ConditionText(
        icon="🧐",
        title="A balance answer was not believed",
        action=(
            "Vonage (or a proxy in between) answered a balance that is implausible or that the "
            "next answer contradicted; it was dropped. Nothing to do unless it repeats."
        ),
        recovered="Balance answers are consistent again.",
    ),
    Condition.ONE_OFF_DEBIT: ConditionText(
        icon="💸",
        title="A one-off debit",
        action=(
            "A single large debit (a number rental, a transfer to a subaccount) was kept out of "
            "the spend rate, so it does not buy top-ups for spend that is not recurring."
        ),
        recovered="No one-off debit in the last ten minutes.",
    ),
    Condition.MESSAGES_REFUSED: ConditionText(
        icon="🚫",
        title="Messages are being refused for lack of credit",
        action=(
            "Senders report out-of-credit refusals (SMS status 9, Messages API 1070): the guard "
            "read the balance at once and tops up if its caps allow. If this lasts, add credit by "
            "hand in the Vonage dashboard and check the other alerts."
        ),
        recovered="Senders report messages accepted again.",
    ),
    Condition.SUBACCOUNT_LOW: ConditionText(
        icon="🪫",
        title="Subaccounts are below their floor",
        action=(
            "The message names them, lowest first. The guard transfers to them from the primary "
            "as fast as the caps and the primary's balance allow; if a related alert says the "
            "primary cannot pay or a cap binds, act on that one."
        ),
        recovered="Every subaccount is above its floor again.",
        severity=Severity.WARNING,
    ),
    Condition.SUBACCOUNT_SUSPENDED: ConditionText(
        icon="⛔",
        title="Subaccounts are suspended at Vonage",
        action=(
            "Vonage reports these subaccounts suspended: they cannot send, and the guard does not "
            "fund them. Reactivate them in the Vonage dashboard (or the Subaccounts API) if that "
            "was not intended."
        ),
        recovered="No subaccount is suspended any more.",
        severity=Severity.WARNING,
    ),
    Condition.FLEET_SHORTFALL: ConditionText(
        icon="🏦",
        title="The primary account cannot cover the fleet",
        action=(
            "The primary's balance above its floor is less than the subaccounts need; the message "
            "ranks who runs dry first and when. The guard tops the primary up as its caps allow; "
            "if they bind or top-ups fail, add credit to the primary by hand now."
        ),
        recovered="The primary covers the fleet again.",
    ),
    Condition.TRANSFER_IN_DOUBT: ConditionText(
        icon="⏳",
        title="A transfer's outcome is not known yet",
        action=(
            "A balance transfer got an ambiguous answer; the guard lists the primary's transfers "
            "for its reference and resends only when the listing proves it did not happen. If "
            "this lasts, the Subaccounts API's listing is failing: check Vonage's status page."
        ),
        recovered="Every transfer is settled.",
        severity=Severity.WARNING,
    ),
}
