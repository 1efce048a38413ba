"""Fleet messages: a transfer that did not simply work, named by its subaccount.

Applied transfers are not messaged one by one (a fleet makes hundreds a day; they are in the
metrics, the ledger and ``/status``); a refusal, an unconfirmed one, and a doubt the listing
settled are — each names the subaccount and the ledger entry, so a person can find it.
"""

from __future__ import annotations

from topup_guard.events import TransferFinished
from topup_guard.notify import format as f
from topup_guard.notify.messages import plain
from topup_guard.notify.note import Note, Paragraph, Scope, Severity

_WORDS = {
    "failed": ("⚠️", Severity.WARNING, "Transfer to {who} not made"),
    "unconfirmed": ("❗", Severity.ERROR, "Transfer to {who} unconfirmed"),
    "succeeded": ("✅", Severity.INFO, "Transfer to {who} applied (settled by the listing)"),
}
_ACTION = {
    "failed": (
        "Nothing was moved. If the detail says the primary lacks credit, the fleet alert says who "
        "runs dry when; otherwise check the subaccount in the Vonage dashboard."
    ),
    "unconfirmed": (
        "The answer was ambiguous and the transfer listing never settled it: check the primary's "
        "balance transfers in the Vonage dashboard for this reference. It counts in the caps "
        "until then, and the guard makes no other transfer to this subaccount meanwhile."
    ),
    "succeeded": "Nothing to do: the listing shows it, exactly once.",
}


def who(event: TransferFinished) -> str:
    return f"{event.name} ({event.account})" if event.name else event.account


def transfer(event: TransferFinished, scope: Scope) -> Note | None:
    """The message for a transfer's outcome, or None for one not worth a message."""
    if event.state == "succeeded" and not event.settled_late:
        return None
    words = _WORDS.get(event.state)
    if words is None:
        return None  # pending/unknown: the transfer_in_doubt condition tells it
    icon, severity, title = words
    title = title.format(who=who(event))
    summary = f"{title}: {f.eur(event.amount)}, reference {event.reference}. {plain(event.detail)}"
    return Note(
        kind=f"transfer_{event.state}",
        severity=severity,
        icon=icon,
        title=title,
        summary=summary,
        scope=scope,
        paragraphs=(
            Paragraph(plain(event.detail) or event.state),
            Paragraph(event.action or _ACTION[event.state], label="What to do"),
        ),
        fields=(
            ("Subaccount", who(event)),
            ("Amount", f.eur(event.amount)),
            ("Reference", event.reference),
            ("Ledger entry", f"#{event.transfer_id}"),
        ),
        wall=event.wall,
    )
