"""``topup-guard ledger``: every top-up attempt with its timeline, evidence and reason, and in
fleet mode every balance transfer to a subaccount beside them (``--account`` picks one account).

The audit trail without a ``sqlite3`` binary or a Redis client: read from the store the
configuration selects (``audit.read_audit``), never written to, so it works as the image's
non-root user on a read-only root filesystem and on a read-only copy of the ledger directory.
Money is shown in full precision (and as exact strings in JSON); times in UTC.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from topup_guard.audit import iso, parse_since, primary_key, read_audit, read_transfers
from topup_guard.cli._common import emit, eur, money_json, say
from topup_guard.cli.commands import STATES
from topup_guard.cli.ledger_transfers import transfer_json, transfer_text
from topup_guard.config import load_settings
from topup_guard.errors import ConfigError
from topup_guard.fleet.transfer_view import TransferTimeline
from topup_guard.ledger.base import AttemptState
from topup_guard.ledger.timeline import AuditTrail, LedgerEvent, Timeline


def wanted_states(given: list[str]) -> set[AttemptState] | None:
    names = [n.strip().lower() for item in given for n in item.split(",") if n.strip()]
    unknown = [n for n in names if n not in STATES]
    if unknown:
        raise ConfigError([f"--state {unknown[0]!r}: expected one of {', '.join(STATES)}"])
    return {AttemptState(n) for n in names} or None


async def ledger(args: argparse.Namespace) -> int:
    states = wanted_states(args.state)
    settings = load_settings()
    since = parse_since(args.since, time.time()) if args.since else None
    primary = primary_key(settings)
    account = args.account or None
    trail = await read_audit(settings, since_wall=since)
    shown = [t for t in trail.timelines if states is None or t.attempt.state in states]
    if account is not None and account != primary:
        shown = []  # a subaccount has no top-ups: the primary pays, by transfer
    transfers: list[TransferTimeline] = []
    if account is None or account != primary:
        found = await read_transfers(settings, since_wall=since, account=account)
        transfers = [t for t in found if states is None or t.entry.state.value in states]
    if trail.note and not args.json:
        say(f"note: {trail.note}")
    filtered = bool(states) or since is not None or account is not None
    parts = [timeline_text(t) for t in shown] + [transfer_text(t) for t in transfers]
    what = "transfers" if account is not None and account != primary else "attempts"
    text = "\n\n".join(parts) or f"no {what}" + (" match" if filtered else " in the ledger yet")
    counts = f"{len(shown)} shown" + (f", {len(transfers)} transfers" if transfers else "")
    data = {**trail_json(trail, shown), "primary": primary,
            "transfers": [transfer_json(t) for t in transfers]}  # fmt: skip
    emit(args, data, f"{text}\n\n({_where(trail)}, {counts})")
    return 0


def _where(trail: AuditTrail) -> str:
    return f"{trail.store} ledger at {trail.location}"


def trail_json(trail: AuditTrail, shown: list[Timeline]) -> dict[str, Any]:
    return {
        "store": trail.store,
        "location": trail.location,
        "note": trail.note or None,
        "attempts": [timeline_json(t) for t in shown],
    }


def timeline_json(t: Timeline) -> dict[str, Any]:
    a = t.attempt
    return {
        "attempt_id": a.attempt_id,
        "state": a.state.value,
        "created": iso(a.created_wall),
        "created_wall": a.created_wall,
        "updated": iso(a.updated_wall),
        "updated_wall": a.updated_wall,
        "balance_before": money_json(a.balance_before),
        "expected_amount": money_json(a.expected_amount),
        "credited": money_json(a.credited),
        "evidence": a.evidence,
        "reason": a.reason,
        "detail": a.detail,
        "holder": a.holder,
        "epoch": a.epoch,
        "events": [event_json(e) for e in t.events],
    }


def event_json(e: LedgerEvent) -> dict[str, Any]:
    return {
        "state": e.state.value,
        "at": iso(e.wall),
        "wall": e.wall,
        "epoch": e.epoch,
        "holder": e.holder,
        "credited": money_json(e.credited),
        "evidence": e.evidence,
        "detail": e.detail,
        "superseded": e.superseded,
    }


def timeline_text(t: Timeline) -> str:
    a = t.attempt
    amount = "amount to be learnt" if a.expected_amount is None else eur(a.expected_amount)
    lines = [
        f"#{a.attempt_id}  {a.state.value.upper()}  {iso(a.created_wall)}  "
        f"balance before {eur(a.balance_before)}, expected {amount}",
        f"    reason:   {a.reason or '(none recorded)'}",
        f"    evidence: {a.evidence or 'none'}"
        + ("" if a.credited is None else f", credited {eur(a.credited)}"),
    ]
    if a.detail:
        lines.append(f"    detail:   {a.detail}")
    for e in t.events:
        extra = [f"evidence {e.evidence}"] if e.evidence else []
        extra += [f"credited {eur(e.credited)}"] if e.credited is not None else []
        extra += [e.detail] if e.detail else []
        extra += ["superseded: another guard resolved it first"] if e.superseded else []
        who = f"epoch {e.epoch}" + (f" {e.holder}" if e.holder else "")
        lines.append(
            f"    {iso(e.wall)}  {e.state.value:<11} {who}"
            + (f"  ({'; '.join(extra)})" if extra else "")
        )
    return "\n".join(lines)
