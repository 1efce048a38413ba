"""``topup-guard explain``: the guard's last decision and the inputs it was made from.

First from a running guard's ``/status`` (balance, forecast, caps used, breaker, conditions, the
decision and its reason; in fleet mode every subaccount, soonest-empty first, the skipped ones
and who runs dry when the primary cannot cover the fleet); when no guard answers, from the
ledger's latest attempt (its reason, evidence and timeline), so it still says something useful
about a guard that has stopped. Reads only; no Vonage call, and no secret is needed for the
``/status`` path.
"""

from __future__ import annotations

import argparse
import os
from typing import Any

from topup_guard.audit import read_audit
from topup_guard.cli._common import emit, err
from topup_guard.cli.check import DEFAULT_HEALTH_PORT
from topup_guard.cli.ledger import timeline_json, timeline_text
from topup_guard.config import env_name, load_settings

STATUS_TIMEOUT = 2.0  # seconds: a local server answers at once, or is not there


def default_status_url(environ_port: str | None) -> str | None:
    raw = environ_port or str(DEFAULT_HEALTH_PORT)
    if not raw.isdigit() or not 0 < int(raw) <= 65535:
        return None
    return f"http://127.0.0.1:{int(raw)}/status"


async def explain(args: argparse.Namespace) -> int:
    url = args.url or default_status_url(os.environ.get(env_name("health_port")))
    from topup_guard.health import fetch_status  # the health server's own client; lazy

    status = await fetch_status(url, STATUS_TIMEOUT) if url else None
    if status is not None:
        emit(args, {"source": "status", "url": url, "status": status}, status_text(status))
        return 0
    settings = load_settings()
    trail = await read_audit(settings)
    if not trail.timelines:
        err(f"nothing to explain: no guard answered at {url} and the ledger has no attempt yet")
        return 1
    latest = trail.timelines[-1]
    text = (
        f"No guard answered at {url}; the ledger's latest attempt "
        f"({trail.store} ledger at {trail.location}):\n\n{timeline_text(latest)}"
    )
    data = {"source": "ledger", "url": url, "attempt": timeline_json(latest)}
    emit(args, data, text)
    return 0


def _num(value: object, unit: str = "", digits: int = 4) -> str:
    if value is None:
        return "unknown"
    if isinstance(value, float | int) and not isinstance(value, bool):
        return f"{value:.{digits}g}{unit}"
    return f"{value}{unit}"


def status_text(s: dict[str, Any]) -> str:
    """The decision first, then each input it was made from."""
    d, f, caps = s.get("decision"), s.get("forecast"), s.get("caps_used") or {}
    out: list[str] = []
    if d is None:
        out.append("Decision: none yet (the guard has not finished its first poll)")
    else:
        action = d["action"] + (f" ×{d['count']}" if d.get("count", 0) > 1 else "")
        out.append(f"Decision: {action}: {d['reason']}")
        if d.get("blocked_by"):
            out.append(f"  blocked by:     {d['blocked_by']} (wanted {d.get('wanted', 0)})")
        out.append(f"  next poll in:   {_num(d.get('next_poll_in_s'), ' s', 3)}")
        if d.get("projected_balance") is not None:
            out.append(f"  projected:      EUR {d['projected_balance']} at the next chance to act")
        if d.get("exhaustion_within_horizon"):
            out.append("  exhaustion is forecast within the warning horizon")
    out.append("Inputs:")
    out.append(
        f"  balance:        EUR {s.get('balance')} (read {_num(s.get('balance_age_s'), ' s', 3)}"
        f" ago), auto-reload {_flag(s.get('auto_reload'), 'on', 'off')}"
    )
    if f is not None:
        out.append(
            f"  spend rate:     {_num(f['rate_eur_per_s'])} EUR/s (short "
            f"{_num(f['rate_short_eur_per_s'])}, long {_num(f['rate_long_eur_per_s'])}, "
            f"peak {_num(f['peak_rate_eur_per_s'])})"
        )
        tte = f.get("time_to_exhaustion_s")
        out.append(
            f"  dry in:         {'no spend seen' if tte is None else _num(tte, ' s', 3)} "
            f"(confidence {_num(f.get('confidence'), '', 2)}, {f.get('samples')} samples)"
        )
    out.append(
        f"  caps used:      {caps.get('topups_last_hour')} top-ups in the last hour; "
        f"{caps.get('topups_last_day')} top-ups and EUR {caps.get('amount_last_day')} in the "
        "last day"
    )
    out.append(
        f"  breaker:        {s.get('breaker')}; this replica may spend: "
        f"{_flag(s.get('may_spend'))}; dry run: {_flag(s.get('dry_run'))}"
    )
    conditions = s.get("conditions") or {}
    for name, detail in conditions.items():
        out.append(f"  condition:      {name}: {detail}")
    last = s.get("last_topup")
    if last is not None:
        out.append(
            f"Last top-up: #{last['attempt_id']} {last['outcome']}: {last.get('detail') or ''}"
            f" (evidence {last.get('evidence') or 'none'})"
        )
    fleet = s.get("fleet")
    if isinstance(fleet, dict):
        out.append(fleet_text(fleet))
    return "\n".join(out)


def _soonest(row: dict[str, Any]) -> tuple[bool, float, str]:
    tte = row.get("seconds_to_empty")
    return tte is None, float(tte) if tte is not None else 0.0, str(row.get("account"))


def _who(row: dict[str, Any]) -> str:
    name = row.get("name")
    return f"{name} ({row.get('account')})" if name else str(row.get("account"))


def _dur(seconds: object) -> str:
    """Seconds to empty as a person reads it: ``200 s``, ``67 min``, ``5.2 h``."""
    if not isinstance(seconds, int | float):
        return "unknown"
    if seconds < 120:
        return f"{max(seconds, 0):.0f} s"
    return f"{seconds / 60:.0f} min" if seconds < 7200 else f"{seconds / 3600:.1f} h"


def fleet_text(fleet: dict[str, Any]) -> str:
    """The ``fleet`` part of ``/status``: accounts soonest-empty first, skipped, shortfall."""
    rows = sorted(fleet.get("accounts") or [], key=_soonest)
    skipped = fleet.get("skipped") or []
    out = [
        f"Fleet: {len(rows)} subaccount(s) guarded, {len(skipped)} skipped; "
        f"{fleet.get('list_calls')} list calls; the primary keeps EUR "
        f"{fleet.get('primary_reserve_eur')} for the fleet",
    ]
    for row in rows:
        tte = row.get("seconds_to_empty")
        dry = "no spend seen" if tte is None else f"dry in {_dur(tte)}"
        flags = " SUSPENDED" if row.get("suspended") else ""
        out.append(
            f"  {_who(row)}{flags}: EUR {row.get('spendable_eur')} (floor "
            f"{row.get('floor_eur')}), {_num(row.get('rate_eur_per_s'))} EUR/s, {dry}"
        )
        out.append(f"      decision: {row.get('decision') or 'none yet'}")
        if row.get("last_action"):
            out.append(f"      last:     {row['last_action']}")
    for row in skipped:
        out.append(f"  skipped {row.get('account')}: {row.get('why')}")
    shortfall = fleet.get("shortfall") or []
    if shortfall:
        out.append("Shortfall: the primary cannot cover the fleet; who runs dry first:")
        for row in shortfall:
            tte = row.get("seconds_to_empty")
            when = "no spend seen" if tte is None else f"in {_dur(tte)}"
            who = f"{row['name']} ({row.get('account')})" if row.get("name") else row.get("account")
            out.append(f"  {who} {when}")
    rules = fleet.get("rules") or {}
    if rules:
        out.append(f"Fleet rules: {rules.get('file')} (fingerprint {rules.get('fingerprint')})")
    return "\n".join(out)


def _flag(value: object, yes: str = "yes", no: str = "no") -> str:
    if value is None:
        return "unknown"
    return yes if value is True else no if value is False else str(value)
