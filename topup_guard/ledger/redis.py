"""The shared ledger in Redis: SqliteLedger's semantics for N guards on one account, plus fencing.

Same contract as ``SqliteLedger``: events are appended, never changed; an attempt's state is its
latest applied event; ``begin`` refuses while any attempt is unresolved. Each check-and-write is
one Lua script (``redis_scripts``), so two guards can never both begin, and the caps and breaker,
computed from ``since``/``latest``, count every replica's attempts.

Fencing, chosen as follows:
- ``begin`` is refused (``FencedError``, nothing written) unless the live lease's value starts
  with the writer's ``<epoch>|<holder>|``: the writer must hold the lease *now*, in the tenure the
  epoch names. A deposed or expired holder therefore never writes PENDING, so it never sends.
- ``transition`` is accepted from the tenure that began the attempt, even after it lost the lease:
  its POST may have spent the money and the ledger must learn the outcome. It is also accepted from
  the current epoch, so the new holder can reconcile an attempt its predecessor left unresolved.
  Any other (stale) epoch gets ``FencedError``.
- Resolved attempts stay resolved (except UNCONFIRMED -> SUCCEEDED); a losing racer's event is
  kept in the stream as ``superseded`` and ``transition`` returns the attempt as recorded.

Durability is Redis's: run it with ``appendonly yes`` (``appendfsync everysec`` or ``always``).
If the ledger vanishes (a restart without persistence, a flush), every call raises LedgerError
until the guards restart, because unresolved attempts may have been forgotten with it. A guard
started after the loss cannot know of it and starts a new ledger (a new generation in ``meta``);
the guards that knew the old one keep refusing until they are restarted too.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
from decimal import Decimal
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff
from redis.commands.core import AsyncScript

from topup_guard.clock import Clock
from topup_guard.config import Settings
from topup_guard.errors import ConfigError, LedgerError
from topup_guard.ledger import redis_scripts
from topup_guard.ledger.base import Attempt, AttemptState, FencedError, LedgerBusyError
from topup_guard.ledger.redis_lease import REDIS_DOWN, RedisKeys, RedisLease

log = logging.getLogger("topup_guard.ledger")


def _s(value: Decimal | None) -> str | None:
    return None if value is None else str(value)


def _dec(value: object) -> Decimal | None:
    return None if value is None else Decimal(str(value))


def _attempt(raw: str) -> Attempt:
    a: dict[str, Any] = json.loads(raw)
    return Attempt(
        attempt_id=int(a["attempt_id"]),
        state=AttemptState(a["state"]),
        created_wall=float(a["created_wall"]),
        updated_wall=float(a["updated_wall"]),
        epoch=int(a["epoch"]),
        holder=str(a["holder"]),
        balance_before=Decimal(a["balance_before"]),
        expected_amount=_dec(a["expected_amount"]),
        credited=_dec(a["credited"]),
        evidence=a["evidence"],
        detail=str(a["detail"]),
        reason=str(a["reason"]),
    )


class RedisLedger:
    """A ``Ledger`` shared by every guard of one account. Closing it closes the Redis client."""

    def __init__(self, client: Redis, keys: RedisKeys, *, op_timeout: float = 5.0) -> None:
        self._client = client
        self._keys = keys
        self._timeout = op_timeout
        self._begin = client.register_script(redis_scripts.BEGIN)
        self._transition = client.register_script(redis_scripts.TRANSITION)
        self._read = client.register_script(redis_scripts.READ)
        self._generation: str | None = None

    @property
    def client(self) -> Redis:
        """The Redis client this ledger shares with the lease (fleet mode's transfer ledger
        uses it too: one connection pool, one fencing epoch)."""
        return self._client

    @property
    def keys(self) -> RedisKeys:
        return self._keys

    async def _run(self, script: AsyncScript, keys: list[str], args: list[str]) -> list[str]:
        """Run one script; Redis trouble becomes LedgerError (no raw redis exception escapes).

        The ledger's generation (a random value in ``meta``, created by the first guard ever)
        is read once per process and passed to every script as the last argument: the script
        refuses ("vanished") unless ``meta`` still holds it. Comparing the value, not mere
        existence, keeps the refusal in force when a guard started *after* the loss creates a
        new ``meta``: the guards that knew the old ledger stay stopped until they restart.
        """
        try:
            async with asyncio.timeout(self._timeout):
                if self._generation is None:
                    await self._client.set(self._keys.meta, secrets.token_hex(8), nx=True)
                    self._generation = str(await self._client.get(self._keys.meta) or "")
                generation = self._generation
                reply: list[str] = await script(keys=keys, args=[*args, generation])
        except REDIS_DOWN as exc:
            raise LedgerError(
                f"the shared ledger in Redis cannot be used ({type(exc).__name__}); "
                "no top-up will happen until it can"
            ) from None
        if reply[0] == "vanished":
            raise LedgerError(
                "the shared ledger vanished from Redis (restarted without persistence, or "
                "flushed): unresolved top-ups may have been forgotten. Check the account's recent "
                "top-ups in the Vonage dashboard, make Redis persistent, then restart the guards"
            )
        return reply

    async def begin(
        self,
        *,
        balance_before: Decimal,
        expected_amount: Decimal | None,
        reason: str,
        wall: float,
        epoch: int,
        holder: str,
        dry_run: bool = False,
        despite_doubt: bool = False,
    ) -> Attempt:
        state = AttemptState.DRY_RUN if dry_run else AttemptState.PENDING
        attempt = {
            "attempt_id": None,  # allocated by the script
            "state": state.value,
            "created_wall": repr(wall),
            "updated_wall": repr(wall),
            "epoch": str(epoch),
            "begin_epoch": str(epoch),
            "holder": holder,
            "balance_before": str(balance_before),
            "expected_amount": _s(expected_amount),
            "credited": None,
            "evidence": None,
            "detail": "",
            "reason": reason,
        }
        k = self._keys
        reply = await self._run(
            self._begin,
            [k.meta, k.lease, k.seq, k.attempts, k.open, k.created, k.events, k.epoch],
            [
                f"{epoch}|{holder}|",
                "1" if dry_run else ("2" if despite_doubt else "0"),
                repr(wall),
                json.dumps(attempt),
            ],
        )
        if reply[0] == "fenced":
            raise FencedError(
                f"epoch {epoch} of {holder} does not hold the spending lease (current epoch "
                f"{reply[1]}); nothing was written"
            )
        if reply[0] == "busy":
            open_ = _attempt(reply[1])
            raise LedgerBusyError(f"attempt {open_.attempt_id} is still {open_.state.value}")
        return _attempt(reply[1])

    async def transition(
        self,
        attempt_id: int,
        state: AttemptState,
        *,
        wall: float,
        epoch: int,
        credited: Decimal | None = None,
        evidence: str | None = None,
        detail: str = "",
    ) -> Attempt:
        patch = {
            "state": state.value,
            "updated_wall": repr(wall),
            "epoch": str(epoch),
            "credited": _s(credited),
            "evidence": evidence,
            "detail": detail,
        }
        k = self._keys
        reply = await self._run(
            self._transition,
            [k.meta, k.epoch, k.attempts, k.open, k.events],
            [str(attempt_id), state.value, str(epoch), "1" if state.unresolved else "0",
             json.dumps(patch)],
        )  # fmt: skip
        if reply[0] == "missing":
            raise LedgerError(f"no attempt {attempt_id} in the ledger")
        if reply[0] == "fenced":
            raise FencedError(
                f"epoch {epoch} neither began attempt {attempt_id} nor is current (current "
                f"epoch {reply[1]}); nothing was written"
            )
        recorded = _attempt(reply[1])
        if reply[0] == "kept":
            log.warning(
                "ledger_transition_superseded",
                extra={
                    "attempt_id": attempt_id,
                    "state": recorded.state.value,
                    "refused_state": state.value,
                    "detail": "another guard resolved this attempt first",
                },
            )
        return recorded

    async def _select(self, mode: str, arg: str = "") -> list[Attempt]:
        k = self._keys
        reply = await self._run(
            self._read, [k.meta, k.attempts, k.open, k.created, k.seq], [mode, arg]
        )
        return sorted((_attempt(raw) for raw in reply[1:]), key=lambda a: a.attempt_id)

    async def unresolved(self) -> list[Attempt]:
        return [a for a in await self._select("open") if a.state.unresolved]

    async def since(self, wall: float) -> list[Attempt]:
        return await self._select("since", repr(wall))

    async def latest(self, limit: int) -> list[Attempt]:
        if limit <= 0:
            return []
        return await self._select("latest", str(limit))

    async def close(self) -> None:
        try:
            await self._client.aclose()
        except REDIS_DOWN:
            log.warning("ledger_close_failed")


def redis_client(url: str, *, timeout: float) -> Redis:
    """A client whose calls fail within ``timeout`` instead of retrying for a minute.

    redis-py retries a failed command 10 times by default; a lease renewal that hangs that long
    would outlive the lease, so one quick retry is all we allow.
    """
    try:
        return Redis.from_url(
            url,
            decode_responses=True,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            retry=Retry(ExponentialWithJitterBackoff(base=0.01, cap=0.1), retries=1),
        )
    except ValueError:
        raise ConfigError(
            ["TOPUP_GUARD_REDIS_URL is not a Redis URL (redis://, rediss:// or unix://)"]
        ) from None


def build_redis_coordination(
    settings: Settings, *, clock: Clock | None = None
) -> tuple[RedisLease, RedisLedger]:
    """The lease and the shared ledger of ``settings.api_key``'s account, on one Redis client.

    Stop the lease before closing the ledger (the ledger owns the client).
    """
    if settings.redis_url is None:
        raise ConfigError(["TOPUP_GUARD_REDIS_URL is not set"])
    timeout = min(settings.lease_ttl / 5, 2.0)
    client = redis_client(settings.redis_url.get_secret_value(), timeout=timeout)
    keys = RedisKeys(settings.api_key or "")
    lease = RedisLease(client, keys, ttl=settings.lease_ttl, clock=clock)
    return lease, RedisLedger(client, keys, op_timeout=max(timeout * 2, 1.0))


# --- read-only timeline (``topup-guard ledger``, ``explain``, ``check``) ------------------------
# Reads only: one MULTI/EXEC snapshot of the creation index, the attempts and the event stream,
# so an attempt's state and its events agree. A racing guard's refused event (``superseded``) is
# part of the audit trail and is shown as such. The location is the key prefix, never the URL.
from topup_guard.ledger.timeline import AuditTrail, LedgerEvent, Timeline  # noqa: E402


def _event(raw: str) -> LedgerEvent:
    e: dict[str, Any] = json.loads(raw)
    return LedgerEvent(
        attempt_id=int(e["attempt_id"]),
        state=AttemptState(e["state"]),
        wall=float(e["updated_wall"]),
        epoch=int(e["epoch"]),
        holder=str(e.get("holder") or ""),
        credited=_dec(e.get("credited")),
        evidence=e.get("evidence"),
        detail=str(e.get("detail") or ""),
        superseded=e.get("superseded") == "true",
    )


async def read_timelines(
    client: Redis, keys: RedisKeys, *, since_wall: float | None = None
) -> AuditTrail:
    """Every attempt created at or after ``since_wall`` (all if None), oldest first, with its
    events. Raises LedgerError when Redis cannot be read or holds no ledger for the account."""
    low = "-inf" if since_wall is None else repr(since_wall)
    try:
        async with client.pipeline(transaction=True) as pipe:
            pipe.get(keys.meta)
            pipe.zrangebyscore(keys.created, low, "+inf")
            pipe.hgetall(keys.attempts)
            pipe.xrange(keys.events, "-", "+")
            meta, ids, attempts, stream = await pipe.execute()
    except REDIS_DOWN as exc:
        raise LedgerError(
            f"the shared ledger in Redis cannot be read ({type(exc).__name__})"
        ) from None
    prefix = keys.meta.removesuffix(":meta")
    if meta is None:
        raise LedgerError(
            f"no shared ledger in Redis under {prefix}: no guard of this account has written "
            "one yet, or Redis lost its data (see the README, Deploying)"
        )
    try:
        chosen = sorted(int(i) for i in ids)
        events: dict[int, list[LedgerEvent]] = {i: [] for i in chosen}
        for _, fields in stream:
            event = _event(fields["event"])
            if event.attempt_id in events:
                events[event.attempt_id].append(event)
        timelines = tuple(
            Timeline(_attempt(attempts[str(i)]), tuple(events[i]))
            for i in chosen
            if str(i) in attempts
        )
    except (KeyError, ValueError, TypeError, ArithmeticError) as exc:
        raise LedgerError(
            f"the shared ledger in Redis is damaged ({type(exc).__name__}: {exc})"
        ) from None
    return AuditTrail("redis", prefix, timelines)
