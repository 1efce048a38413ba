"""The probe and status server: ``/livez``, ``/readyz``, ``/metrics``, ``/status`` (``probehttp``).

Freshness has one definition for both probes: a timestamp is fresh when it is at most
``3 × poll_interval + 30 s`` old on the guard's clock. Three missed polls rule out one slow poll
or one retry storm; the 30 s absorbs a slow top-up verification.

- ``/livez`` — 200 while the engine loop's heartbeat is fresh (before the first heartbeat, the
  start time stands in for it: a start-up grace period), else 503. A stuck loop gets restarted.
- ``/readyz`` — 200 when ``ready_check`` passes (configuration valid, ledger open) and a balance
  was read within the freshness limit, else 503 with the reason. Failing readiness only takes the
  pod out of Service endpoints; it never restarts it.
- ``/metrics`` — Prometheus text (``text/plain; version=0.0.4``).
- ``/status`` — JSON for humans and scripts: money as strings, no secrets, ``null`` for unknown
  (a time to exhaustion of ``null`` means no spend is seen).
"""

from __future__ import annotations

import json
import logging
import types
from collections.abc import Callable
from typing import Any, cast
from urllib.parse import urlsplit

from topup_guard import redact
from topup_guard.clock import Clock
from topup_guard.logs import jsonable
from topup_guard.probehttp import ProbeServer, Reply
from topup_guard.promtext import CONTENT_TYPE
from topup_guard.status import GuardStatus

JSON_TYPE = "application/json; charset=utf-8"

log = logging.getLogger("topup_guard.health")


def freshness_limit(poll_interval: float) -> float:
    """Seconds after which a heartbeat or balance read counts as stale."""
    return 3 * poll_interval + 30.0


class HealthServer:
    """Serves the probes from ``GuardStatus``; reads only, so it can never disturb the engine."""

    def __init__(
        self,
        status: GuardStatus,
        clock: Clock,
        *,
        host: str = "127.0.0.1",
        port: int = 8080,
        poll_interval: float = 60.0,
        metrics: Callable[[], str] = lambda: "",
        ready_check: Callable[[], bool] | None = None,
    ) -> None:
        self.status, self.clock = status, clock
        self.host, self.port = host, port
        self.limit = freshness_limit(poll_interval)
        self._metrics, self._ready_check = metrics, ready_check
        self._server: ProbeServer | None = None

    async def start(self) -> None:
        # No access log: probes every few seconds would drown the guard's own log lines.
        server = ProbeServer(
            {
                "/livez": lambda: _probe(*self.live()),
                "/readyz": lambda: _probe(*self.ready()),
                "/metrics": lambda: Reply(200, CONTENT_TYPE, self._metrics().encode()),
                "/status": self._status,
            }
        )
        self.port = await server.start(self.host, self.port)
        self._server = server
        log.info("health_server_started", extra={"host": self.host, "port": self.port})

    async def stop(self) -> None:
        if self._server is not None:
            server, self._server = self._server, None
            await server.stop()

    # --- checks (plain methods, so tests and the CLI can use them without HTTP) ----------------
    def live(self) -> tuple[bool, str]:
        beat = self.status.heartbeat
        reference = beat if beat is not None else self.status.started_at
        age = self.clock.now() - reference
        if age <= self.limit:
            return True, "ok" if beat is not None else "starting"
        what = "heartbeat" if beat is not None else "no heartbeat since start"
        return False, f"{what} {age:.0f}s old (limit {self.limit:.0f}s): engine loop stuck"

    def ready(self) -> tuple[bool, str]:
        if self._ready_check is not None:
            try:
                if not self._ready_check():
                    return False, "ready check failed (configuration or ledger)"
            except Exception as exc:  # a broken check means not ready, never a 500
                return False, f"ready check raised {type(exc).__name__}"
        seen = self.status.last_balance_at
        if seen is None:
            return False, "no balance read yet"
        age = self.clock.now() - seen
        if age > self.limit:
            return False, f"last balance read {age:.0f}s ago (limit {self.limit:.0f}s)"
        return True, "ok"

    def _status(self) -> Reply:
        return _json(200, status_document(self.status, self.clock, self.limit))


def _json(status: int, doc: object) -> Reply:
    return Reply(status, JSON_TYPE, json.dumps(doc).encode())


def _probe(ok: bool, reason: str) -> Reply:
    return _json(200 if ok else 503, {"status": "ok" if ok else "unavailable", "reason": reason})


def status_document(status: GuardStatus, clock: Clock, limit: float) -> dict[str, Any]:
    """What ``/status`` shows. Built from public fields only: nothing here can hold a secret."""
    now = clock.now()
    forecast, decision, topup = status.forecast, status.decision, status.last_topup
    doc: dict[str, Any] = {
        "balance": status.balance,
        "balance_age_s": None if status.last_balance_at is None else now - status.last_balance_at,
        "auto_reload": status.auto_reload,
        "dry_run": status.dry_run,
        "may_spend": status.may_spend,
        "breaker": "open" if status.breaker_open else "closed",
        "caps_used": {
            "topups_last_hour": status.topups_last_hour,
            "topups_last_day": status.topups_last_day,
            "amount_last_day": status.amount_last_day,
        },
        "forecast": None,
        "decision": None,
        "last_topup": None,
        "conditions": dict(status.active_conditions),
        "credits_in_flight": list(status.in_flight),
        "learnt_topup_amount": status.learnt_amount,
        "credit_latency_s": status.credit_latency_s,
        "misreads": status.misreads,
        "one_off_debits": list(status.one_off_debits),
        "unexplained_credits_eur": status.unexplained_credits_eur,
        "burst_memory": {
            "expected_now_eur_per_s": status.remembered_rate,
            "largest_eur_per_s": status.largest_burst,
        },
        "heartbeat_age_s": None if status.heartbeat is None else now - status.heartbeat,
        "uptime_s": now - status.started_at,
        "freshness_limit_s": limit,
    }
    if status.fleet is not None:
        doc["fleet"] = status.fleet()
    if forecast is not None:
        doc["forecast"] = {
            "rate_eur_per_s": forecast.rate,
            "rate_short_eur_per_s": forecast.rate_short,
            "rate_long_eur_per_s": forecast.rate_long,
            "peak_rate_eur_per_s": forecast.peak_rate,
            "time_to_exhaustion_s": forecast.time_to_exhaustion,
            "confidence": forecast.confidence,
            "samples": forecast.samples,
            "spend_total": forecast.spend_total,
            "credits_total": forecast.credits_total,
        }
    if decision is not None:
        doc["decision"] = {
            "action": decision.action.value,
            "reason": decision.reason,
            "count": decision.count,
            "wanted": decision.wanted,
            "blocked_by": decision.blocked_by,
            "next_poll_in_s": decision.next_poll_in,
            "exhaustion_within_horizon": decision.exhaustion_within_horizon,
            "projected_balance": decision.projected_balance,
        }
    if topup is not None:
        doc["last_topup"] = {
            "attempt_id": topup.attempt_id,
            "outcome": topup.outcome.value,
            "balance_before": topup.balance_before,
            "expected_amount": topup.expected_amount,
            "credited": topup.credited,
            "balance_after": topup.balance_after,
            "reason": topup.reason,
            "detail": topup.detail,
            "action_needed": topup.action_needed,
            "requests": topup.requests,
            "evidence": topup.evidence,
            "wall": topup.wall,
        }
    # Defence in depth: reasons and details are free text written by other modules.
    return cast("dict[str, Any]", redact.scrub_tree("status", jsonable(doc)))


async def check_live(url: str, timeout: float = 2.0) -> bool:  # noqa: ASYNC109 - CLI one-shot
    """``topup-guard check --live``: True when ``url`` (or ``url`` + ``/livez``) answers 200."""
    if urlsplit(url).path in ("", "/"):
        url = url.rstrip("/") + "/livez"
    aiohttp = _aiohttp()
    try:
        client_timeout = aiohttp.ClientTimeout(total=timeout)
        async with (
            aiohttp.ClientSession(timeout=client_timeout) as session,
            session.get(url, allow_redirects=False) as response,
        ):
            ok: bool = response.status == 200
            return ok
    except (aiohttp.ClientError, TimeoutError, OSError, ValueError):
        return False


async def fetch_status(url: str, timeout: float = 2.0) -> dict[str, Any] | None:  # noqa: ASYNC109
    """``topup-guard explain``: the ``/status`` document at ``url``, or None when nothing (or
    something that is not a guard) answers."""
    aiohttp = _aiohttp()
    try:
        client_timeout = aiohttp.ClientTimeout(total=timeout)
        async with (
            aiohttp.ClientSession(timeout=client_timeout) as session,
            session.get(url, allow_redirects=False) as response,
        ):
            if response.status != 200:
                return None
            doc = json.loads(await response.text())
    except (aiohttp.ClientError, TimeoutError, OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) and "decision" in doc else None


def _aiohttp() -> types.ModuleType:
    """aiohttp for the CLI's one-shot probes (the worker itself never loads it for these)."""
    from topup_guard.tlsdefer import import_aiohttp

    import_aiohttp()
    import aiohttp

    return aiohttp
