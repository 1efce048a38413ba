"""Reading the audit trail from the store the configuration selects, without writing to it.

The choice mirrors ``app.build_coordinator``: ``TOPUP_GUARD_REDIS_URL`` set means the shared
ledger in Redis, otherwise the SQLite file at ``TOPUP_GUARD_STATE_PATH``. Both readers only read
(``ledger.sqlite.read_timelines`` opens the file through a read-only URI), so the commands built
on this work as the image's non-root user on its read-only root filesystem, against a copy of a
ledger, or beside a running guard.
"""

from __future__ import annotations

import contextlib
import re
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from topup_guard.config import Settings
from topup_guard.errors import ConfigError, LedgerError
from topup_guard.ledger.timeline import AuditTrail

if TYPE_CHECKING:
    from topup_guard.fleet.transfer_view import TransferTimeline

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$", re.IGNORECASE)
_UNIT_S = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
REDIS_READ_TIMEOUT = 2.0  # seconds; a reader waits no longer than a guard's own Redis calls


async def read_audit(settings: Settings, *, since_wall: float | None = None) -> AuditTrail:
    """The attempts created at or after ``since_wall`` (all when None), with their timelines."""
    if settings.redis_url is None:
        from topup_guard.ledger.sqlite import read_timelines

        return read_timelines(settings.state_path, since_wall=since_wall)
    from topup_guard.ledger.redis import read_timelines as read_redis
    from topup_guard.ledger.redis import redis_client
    from topup_guard.ledger.redis_lease import REDIS_DOWN, RedisKeys

    settings.require("api_key")  # the shared ledger's keys are per account
    client = redis_client(settings.redis_url.get_secret_value(), timeout=REDIS_READ_TIMEOUT)
    try:
        return await read_redis(client, RedisKeys(settings.api_key or ""), since_wall=since_wall)
    finally:
        with contextlib.suppress(*REDIS_DOWN):
            await client.aclose()


async def read_transfers(
    settings: Settings, *, since_wall: float | None = None, account: str | None = None
) -> list[TransferTimeline]:
    """Fleet mode's balance transfers (created at or after ``since_wall``; one subaccount's when
    ``account`` is given), from where the top-up ledger is: the same SQLite file or the same
    Redis (``fleet.build.build_transfer_ledger``). A single-account ledger has none."""
    if settings.redis_url is None:
        from topup_guard.fleet.transfer_view import read_transfer_timelines

        timelines, _ = read_transfer_timelines(
            settings.state_path, since_wall=since_wall, account=account
        )  # its note is the top-up read's (one file, one read-only open)
        return timelines
    from topup_guard.fleet.transfer_view import read_redis_transfer_timelines
    from topup_guard.ledger.redis import redis_client
    from topup_guard.ledger.redis_lease import REDIS_DOWN, RedisKeys

    settings.require("api_key")
    client = redis_client(settings.redis_url.get_secret_value(), timeout=REDIS_READ_TIMEOUT)
    try:
        return await read_redis_transfer_timelines(
            client, RedisKeys(settings.api_key or ""), since_wall=since_wall, account=account
        )
    finally:
        with contextlib.suppress(*REDIS_DOWN):
            await client.aclose()


def primary_key(settings: Settings) -> str | None:
    """The primary account's key: configured, else the one the SQLite ledger is bound to."""
    if settings.api_key:
        return settings.api_key
    if settings.redis_url is not None:
        return None
    from topup_guard.ledger.sqlite import read_only_account

    try:
        return read_only_account(settings.state_path)[0]
    except LedgerError:  # the top-up read reports an unreadable file itself
        return None


def parse_since(text: str, now_wall: float) -> float:
    """``--since``: a duration back from now (``90s``, ``30m``, ``2h``, ``7d``, ``1w``) or an ISO
    8601 time (``2026-12-01T09:30``; UTC unless it names an offset). Unix seconds."""
    match = _DURATION.match(text)
    if match:
        return now_wall - float(match.group(1)) * _UNIT_S[match.group(2).lower()]
    try:
        when = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ConfigError(
            [f"--since {text!r}: expected a duration such as 2h, 30m, 7d or an ISO time such as "
             "2026-12-01T09:30 (UTC unless an offset is given)"]
        ) from None  # fmt: skip
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.timestamp()


def iso(wall: float) -> str:
    """A wall time as the ledger's readers show it: UTC, to the second, with a Z."""
    return datetime.fromtimestamp(wall, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
