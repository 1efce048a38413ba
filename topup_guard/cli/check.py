"""``topup-guard check``: is this configuration able to keep the account funded?

Without ``--live`` it validates the settings (bad ones exit 2 through ``main``, one line per
variable), reads the balance with them, and looks for combinations that would leave the guard
unable or unwilling to act: auto-reload off, caps that forbid every top-up, a ledger that cannot
be written, a breaker the ledger shows open or caps it shows used up. Every rule ``run`` applies
to the settings is applied here too (``load_settings``). What cannot be verified without
spending money (the trx) is said so plainly. With a fleet file it also lists the subaccounts
and says what the rules make of them (``check_fleet``). Any problem exits 1; warnings are shown
but do not fail. ``--slack`` also sends a test message through the configured Slack.

With ``--live`` it only asks the running worker's ``/livez`` — cheap, no Vonage call, no secrets
needed — so it can serve as a Kubernetes exec probe.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Literal
from urllib.parse import urlsplit

from topup_guard import limits
from topup_guard.audit import iso
from topup_guard.cli._common import client_for, emit, err, eur, settings_for_api
from topup_guard.config import Settings, env_name
from topup_guard.errors import LedgerError, VonageError

if TYPE_CHECKING:
    from topup_guard.ledger.timeline import AuditTrail

Level = Literal["ok", "warning", "unverified", "problem"]
"""``unverified``: cannot be checked without side effects (spending money); never fails."""
DEFAULT_HEALTH_PORT = 8080


@dataclass(frozen=True, slots=True)
class Finding:
    name: str
    level: Level
    message: str


TRX_UNVERIFIED = Finding(
    "trx",
    "unverified",
    "set, but it cannot be verified without spending money: Vonage checks it only on a real "
    "top-up (`topup-guard top-up` charges the card once)",
)


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
    if s.redis_url is None and (problem := ledger_path_problem(s.state_path)):
        found.append(Finding("ledger", "problem", f"{env_name('state_path')}: {problem}"))
    return found


def _may(path: Path, mode: int) -> bool:
    # The effective ids are the ones the open will be checked against (setuid, tests as nobody).
    effective = os.access in os.supports_effective_ids
    return os.access(path, mode, effective_ids=effective)


def ledger_path_problem(path: Path) -> str | None:
    """Why ``run`` could not open the SQLite ledger at ``path`` (it creates missing
    directories), or None. ``run`` also refuses a directory; ``load_settings`` says so."""
    if path.exists():
        wal_dir = path.resolve().parent  # SQLite writes -wal and -shm beside the file
        if not _may(path, os.R_OK | os.W_OK):
            return f"{path} is not writable by this user"
        if not _may(wal_dir, os.W_OK | os.X_OK):
            return f"{wal_dir} is not writable by this user (SQLite keeps its journal there)"
        return None
    existing = path.resolve().parent
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        return f"{existing} is a file, so the ledger's directory cannot be created"
    if not _may(existing, os.W_OK | os.X_OK):
        return f"{existing} is not writable by this user, so {path} cannot be created"
    return None


def ledger_findings(trail: AuditTrail, s: Settings, now_wall: float) -> list[Finding]:
    """What the ledger says about acting now: an open breaker or used-up caps block top-ups."""
    attempts = [t.attempt for t in trail.timelines]
    use = limits.usage(attempts, now_wall, assumed_amount=s.topup_amount)
    caps = limits.Limits(s.max_topups_per_hour, s.max_topups_per_day, s.max_daily_amount,
                         s.breaker_threshold, s.breaker_cooldown)  # fmt: skip
    found: list[Finding] = []
    if limits.breaker_open(use, caps, now_wall):
        trial = (use.last_failure_wall or now_wall) + s.breaker_cooldown
        found.append(
            Finding(
                "breaker",
                "problem",
                f"open: the last {use.consecutive_failures} top-ups failed or went unconfirmed "
                f"(see `topup-guard ledger --state failed,unconfirmed`); no top-up until one "
                f"trial at {iso(trial)}",
            )
        )
    elif limits.topups_allowed(use, caps, s.topup_amount) == 0:
        found.append(
            Finding(
                "caps",
                "problem",
                f"used up by the ledger: {use.last_hour} top-ups in the last hour, "
                f"{use.last_day} and EUR {use.amount_last_day} in the last day; no top-up now",
            )
        )
    else:
        found.append(Finding("ledger", "ok", f"{len(attempts)} attempts in the last day, readable"))
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
    if settings.fleet_file is not None:
        from topup_guard.cli.check_fleet import fleet_findings  # only for fleets

        findings += await fleet_findings(settings)
    findings += policy_findings(settings)
    findings.append(TRX_UNVERIFIED)
    findings += await _ledger_now(settings)
    findings += telemetry_findings(os.environ)
    if any(f.name in ("breaker", "caps") and f.level == "problem" for f in findings):
        # The settings allow topping up, but the ledger says the guard will not right now.
        findings = [f for f in findings if (f.name, f.level) != ("caps", "ok")]
    if args.slack:
        findings.append(await slack_finding(settings))
    ok = all(f.level != "problem" for f in findings)
    text = "\n".join(
        f"{f.level.upper() if f.level != 'ok' else 'ok':<8} {f.name}: {f.message}" for f in findings
    )
    emit(args, {"ok": ok, "checks": [asdict(f) for f in findings]}, text)
    return 0 if ok else 1


def telemetry_findings(environ: Mapping[str, str]) -> list[Finding]:
    """What ``run`` will do with the ``OTEL_*`` variables (it ignores bad ones with a warning)."""
    from topup_guard.otelenv import parse_otel_env

    env = parse_otel_env(environ, "topup-guard")
    found = [Finding("telemetry", "warning", p) for p in env.problems]
    if env.disabled:
        return [*found, Finding("telemetry", "ok", "OTEL_SDK_DISABLED: no traces or metrics")]
    where = [f"{name} to {_host_path(cfg.endpoint)}" for name, cfg in (("traces", env.traces),
             ("metrics", env.metrics)) if cfg is not None]  # fmt: skip
    text = ", ".join(where) if where else "no OTLP exporter (/metrics still serves)"
    return [*found, Finding("telemetry", "ok", text)]


def _sqlite_refusal(s: Settings) -> str | None:
    """What ``SqliteLedger`` would refuse on open: another account's ledger, or damage."""
    from topup_guard.ledger.sqlite import read_only_account

    account, check = read_only_account(s.state_path)
    if check != "ok":
        return f"{s.state_path} fails SQLite's integrity check ({check}): `run` refuses it"
    if account is not None and s.api_key and account != s.api_key:
        return (
            f"{s.state_path} belongs to account {account}, not {s.api_key}: `run` refuses it "
            "(one ledger per account; set TOPUP_GUARD_STATE_PATH to this account's)"
        )
    return None


def _host_path(url: str) -> str:
    """An endpoint without userinfo or query, which may carry credentials."""
    parts = urlsplit(url)
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{parts.hostname}{port}{parts.path}"


async def _ledger_now(s: Settings) -> list[Finding]:
    from topup_guard.audit import read_audit  # a reader only: check never writes the ledger

    if s.redis_url is None and not s.state_path.exists():
        return [Finding("ledger", "ok", f"none yet at {s.state_path}: `run` creates it")]
    try:
        if s.redis_url is None and (problem := _sqlite_refusal(s)):
            return [Finding("ledger", "problem", problem)]
        trail = await read_audit(s, since_wall=time.time() - limits.DAY)
    except LedgerError as exc:
        return [Finding("ledger", "problem", f"cannot be read: {exc}")]
    return ledger_findings(trail, s, time.time())


async def slack_finding(s: Settings) -> Finding:
    """``check --slack``: one test message through the configured Slack."""
    from topup_guard.cli.check_slack import send_test_message

    return Finding("slack", *await send_test_message(s))


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
