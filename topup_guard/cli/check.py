"""``topup-guard check``: is this configuration able to keep the account funded?

Without ``--live`` it validates the settings (bad ones exit 2 through ``main``, one line per
variable), reads the balance with them, and looks for combinations that would leave the guard
unable or unwilling to act: auto-reload off, caps that forbid every top-up, a ledger that cannot
be written. Any problem exits 1; warnings are shown but do not fail.

With ``--live`` it only asks the running worker's ``/livez`` — cheap, no Vonage call, no secrets
needed — so it can serve as a Kubernetes exec probe.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import asdict, dataclass
from decimal import Decimal
from typing import Literal

from topup_guard.cli._common import add_json, client_for, emit, err, eur, settings_for_api, sync
from topup_guard.config import Settings, env_name
from topup_guard.errors import VonageError

Level = Literal["ok", "warning", "problem"]
DEFAULT_HEALTH_PORT = 8080


@dataclass(frozen=True, slots=True)
class Finding:
    name: str
    level: Level
    message: str


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("check", help="validate the configuration against the account")
    p.add_argument(
        "--live", action="store_true", help="only ask the running worker's /livez (exec probe)"
    )
    p.add_argument("--url", metavar="URL", help="the /livez URL for --live")
    add_json(p)
    p.set_defaults(handler=sync(check))


def policy_findings(s: Settings) -> list[Finding]:
    """What the settings alone say; pure, so each rule is easy to test."""
    found: list[Finding] = []
    caps = {
        "max_topups_per_hour": s.max_topups_per_hour,
        "max_topups_per_day": s.max_topups_per_day,
        "max_daily_amount": s.max_daily_amount,
    }
    zero = [env_name(k) for k, v in caps.items() if v == 0]
    if zero:
        found.append(Finding("caps", "problem", f"{', '.join(zero)} = 0 forbids every top-up"))
    elif s.topup_amount is not None and s.topup_amount > s.max_daily_amount:
        found.append(
            Finding(
                "caps",
                "problem",
                f"one top-up (EUR {s.topup_amount}) exceeds {env_name('max_daily_amount')} "
                f"(EUR {s.max_daily_amount}): every top-up would be blocked",
            )
        )
    elif s.max_topups_per_day < s.max_topups_per_hour:
        found.append(Finding("caps", "warning", "the daily top-up count is below the hourly one"))
    else:
        found.append(Finding("caps", "ok", "top-up caps allow topping up"))
    if s.min_balance == 0:
        found.append(
            Finding("min_balance", "warning", "0: the guard acts only when the balance is gone")
        )
    if s.poll_interval > s.horizon:
        found.append(
            Finding("horizon", "warning", "shorter than the poll interval: warnings come late")
        )
    if s.dry_run:
        found.append(Finding("dry_run", "warning", "dry run: the guard will never top up"))
    if s.redis_url is None:
        where = s.state_path.resolve().parent
        if not (where.is_dir() and os.access(where, os.W_OK)):
            found.append(
                Finding("ledger", "problem", f"{env_name('state_path')}: {where} is not writable")
            )
    return found


def balance_findings(value: Decimal, auto_reload: bool | None, s: Settings) -> list[Finding]:
    found = [Finding("balance", "ok", f"{eur(value)} read with these credentials")]
    if auto_reload is False:
        found.append(
            Finding(
                "auto_reload",
                "problem",
                "auto-reload is off: Vonage refuses every top-up until a manual payment with "
                "auto-reload enabled (which also gives a new trx)",
            )
        )
    elif auto_reload is None:
        found.append(Finding("auto_reload", "warning", "Vonage did not report the state"))
    else:
        found.append(Finding("auto_reload", "ok", "on"))
    if value < s.min_balance:
        found.append(
            Finding(
                "min_balance", "warning", f"the balance is below the floor of EUR {s.min_balance}"
            )
        )
    return found


async def check(args: argparse.Namespace) -> int:
    if args.live:
        return await _live(args)
    if args.url is not None:
        err("--url is only used with --live")
        return 2
    settings = settings_for_api("trx")
    findings: list[Finding] = []
    try:
        async with client_for(settings) as client:
            balance = await client.get_balance()
    except VonageError as exc:
        findings.append(
            Finding("balance", "problem", f"cannot read it: {type(exc).__name__}: {exc}")
        )
    else:
        findings += balance_findings(balance.value, balance.auto_reload, settings)
    findings += policy_findings(settings)
    ok = all(f.level != "problem" for f in findings)
    text = "\n".join(
        f"{f.level.upper() if f.level != 'ok' else 'ok':<8} {f.name}: {f.message}" for f in findings
    )
    emit(args, {"ok": ok, "checks": [asdict(f) for f in findings]}, text)
    return 0 if ok else 1


def _default_live_url() -> str | None:
    raw = os.environ.get(env_name("health_port"), str(DEFAULT_HEALTH_PORT))
    if not raw.isdigit() or not 0 < int(raw) <= 65535:
        return None
    return f"http://127.0.0.1:{int(raw)}/livez"


async def _live(args: argparse.Namespace) -> int:
    """Exit 0 when /livez answers 200, else 1. No settings are loaded: a probe needs none."""
    from topup_guard.health import check_live  # the health server's own client; lazy on purpose

    url = args.url or _default_live_url()
    if url is None:
        err(f"{env_name('health_port')}: must be a port from 1 to 65535 (or pass --url)")
        return 2
    live = await check_live(url)
    emit(args, {"live": live, "url": url}, f"{'live' if live else 'NOT live'}: {url}")
    return 0 if live else 1
