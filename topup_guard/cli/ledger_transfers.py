"""How ``topup-guard ledger`` shows fleet mode's balance transfers: one subaccount per entry.

Each transfer names the subaccount it funded (its API key: not a secret), its reference (what the
Vonage dashboard and the transfer listing show), its state, the amount asked for and the amount
Vonage reports it moved, and every event it went through. The same shape for SQLite and Redis
(``fleet.transfer_view``).
"""

from __future__ import annotations

from typing import Any

from topup_guard.audit import iso
from topup_guard.cli._common import eur, money_json
from topup_guard.fleet.transfer_view import TransferEvent, TransferTimeline


def transfer_json(t: TransferTimeline) -> dict[str, Any]:
    e = t.entry
    return {
        "transfer_id": e.transfer_id,
        "account": e.account,
        "reference": e.reference,
        "state": e.state.value,
        "amount": money_json(e.amount),
        "applied_amount": money_json(e.applied_amount),
        "vonage_id": e.vonage_id,
        "created": iso(e.created_wall),
        "created_wall": e.created_wall,
        "updated": iso(e.updated_wall),
        "updated_wall": e.updated_wall,
        "reason": e.reason,
        "detail": e.detail,
        "holder": e.holder,
        "epoch": e.epoch,
        "events": [transfer_event_json(ev) for ev in t.events],
    }


def transfer_event_json(ev: TransferEvent) -> dict[str, Any]:
    return {
        "state": ev.state.value,
        "at": iso(ev.wall),
        "wall": ev.wall,
        "epoch": ev.epoch,
        "vonage_id": ev.vonage_id,
        "applied_amount": money_json(ev.applied_amount),
        "detail": ev.detail,
        "superseded": ev.superseded,
    }


def transfer_text(t: TransferTimeline) -> str:
    e = t.entry
    moved = "" if e.applied_amount is None else f", moved {eur(e.applied_amount)}"
    lines = [
        f"transfer #{e.transfer_id}  {e.state.value.upper()}  {iso(e.created_wall)}  "
        f"to {e.account}: {eur(e.amount)}{moved}",
        f"    reference: {e.reference}" + (f" (Vonage id {e.vonage_id})" if e.vonage_id else ""),
        f"    reason:    {e.reason or '(none recorded)'}",
    ]
    if e.detail:
        lines.append(f"    detail:    {e.detail}")
    for ev in t.events:
        extra = [f"moved {eur(ev.applied_amount)}"] if ev.applied_amount is not None else []
        extra += [ev.detail] if ev.detail else []
        extra += ["superseded: the transfer was already settled"] if ev.superseded else []
        lines.append(
            f"    {iso(ev.wall)}  {ev.state.value:<11} epoch {ev.epoch}"
            + (f"  ({'; '.join(extra)})" if extra else "")
        )
    return "\n".join(lines)
