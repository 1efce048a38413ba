"""The spending lease in Redis: one holder among N guards, with a fencing epoch.

A lease is one key, ``topup-guard:{account}:lease``, whose value is ``"<epoch>|<holder>|<token>"``
and which expires ``ttl`` seconds after it was last set or renewed (Redis expires it in real time).
Every acquisition increments ``topup-guard:{account}:epoch`` in the same Lua script that takes the
lease, so each tenure has a number no other tenure ever had; the shared ledger refuses a ``begin``
from any epoch but the live lease's (fencing, see ``topup_guard.ledger.redis``).

A lease alone is not enough (a paused holder can act after its lease lapsed), so the holder also
stops spending on its own: ``may_spend()`` is True only while its last successful renewal, timed
by the injected clock from *before* the renewal was sent, is younger than ``ttl - margin``. It
renews every ``ttl / 3``; one missed renewal leaves a third of the lease in hand, and the margin
absorbs a pause between the check and the ledger write. When Redis cannot be reached nobody may
spend (``healthy`` is False) and the engine raises COORDINATION_DOWN.

The ledger's fence compares the live lease's value with the writer's ``<epoch>|<holder>|``, so
even a Redis restart that forgets the epoch counter (and reissues epoch 1) cannot let a deposed
holder on another host pass. Redis must persist its data (``appendonly yes``) for the *ledger* to be
durable; the lease itself does not need it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import secrets
from dataclasses import dataclass

from redis.asyncio import Redis
from redis.exceptions import RedisError

from topup_guard.clock import Clock, SystemClock
from topup_guard.coordination import default_holder_id

log = logging.getLogger("topup_guard.coordination")

# Errors that mean "Redis cannot be used right now" (never let them escape this module).
REDIS_DOWN: tuple[type[BaseException], ...] = (RedisError, OSError, TimeoutError)

# KEYS: lease, epoch. ARGV: "<holder>|<token>", ttl ms. -> {1, epoch} taken, or {0, pttl ms} held.
_ACQUIRE = """
if redis.call('EXISTS', KEYS[1]) == 1 then
  return {0, redis.call('PTTL', KEYS[1])}
end
local epoch = redis.call('INCR', KEYS[2])
redis.call('SET', KEYS[1], tostring(epoch) .. '|' .. ARGV[1], 'PX', ARGV[2])
return {1, epoch}
"""
# KEYS: lease. ARGV: full value, ttl ms. -> 1 renewed, 0 the lease is not ours any more.
_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""
# KEYS: lease. ARGV: full value. Deletes only our own lease, never a successor's.
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


@dataclass(frozen=True, slots=True)
class RedisKeys:
    """Every key of one account. The ``{account}`` hash tag keeps them in one Cluster slot."""

    account: str

    def _key(self, name: str) -> str:
        return f"topup-guard:{{{self.account}}}:{name}"

    @property
    def lease(self) -> str:
        return self._key("lease")

    @property
    def epoch(self) -> str:
        return self._key("epoch")

    @property
    def meta(self) -> str:
        return self._key("meta")

    @property
    def seq(self) -> str:
        return self._key("attempt-seq")

    @property
    def attempts(self) -> str:
        return self._key("attempts")

    @property
    def open(self) -> str:
        return self._key("open")

    @property
    def created(self) -> str:
        return self._key("created")

    @property
    def events(self) -> str:
        return self._key("events")


class RedisLease:
    """A ``Coordinator``: holds or watches the account's lease in a background task."""

    def __init__(
        self,
        client: Redis,
        keys: RedisKeys,
        *,
        ttl: float,
        clock: Clock | None = None,
        holder: str | None = None,
        margin: float | None = None,
    ) -> None:
        if ttl <= 0:
            raise ValueError("ttl must be positive")
        self._client = client
        self._keys = keys
        self._ttl = ttl
        self._margin = ttl / 3 if margin is None else margin
        self._clock = clock or SystemClock()
        self._holder = holder or default_holder_id()
        self._token = secrets.token_hex(16)  # a restarted process with the same pid is not us
        self._acquire = client.register_script(_ACQUIRE)
        self._renew = client.register_script(_RENEW)
        self._release = client.register_script(_RELEASE)
        self._value: str | None = None  # the lease value while we believe we hold it
        self._epoch = 0
        self._renewed_at: float | None = None
        self._healthy = True
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @property
    def holder(self) -> str:
        return self._holder

    @property
    def epoch(self) -> int:
        """The epoch of this replica's latest acquisition (kept after losing it; 0 before)."""
        return self._epoch

    @property
    def healthy(self) -> bool:
        return self._healthy

    @property
    def is_holder(self) -> bool:
        """This replica believes it holds the lease (freshness aside)."""
        return self._value is not None

    def may_spend(self) -> bool:
        if self._value is None or not self._healthy or self._renewed_at is None:
            return False
        return self._clock.now() - self._renewed_at < self._ttl - self._margin

    async def start(self) -> None:
        """One step at once (so the state is known on return), then the background loop."""
        if self._task is not None:
            return
        self._stopping.clear()
        first = await self.tick()
        self._task = asyncio.create_task(self._loop(first), name="topup-guard-lease")

    async def stop(self, *, release: bool = True) -> None:
        """Stop renewing; release the lease (compare-and-delete) so a peer takes over at once.

        ``release=False`` walks away like a crashed process: peers wait for the lease to expire.
        """
        self._stopping.set()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        value, self._value = self._value, None
        if release and value is not None:
            with contextlib.suppress(*REDIS_DOWN):
                async with asyncio.timeout(self._margin):
                    await self._release(keys=[self._keys.lease], args=[value])
            log.info("lease_released", extra={"epoch": self._epoch, "holder": self._holder})

    async def tick(self) -> float:
        """One step: renew when holder, else try to take the lease. Returns seconds to the next.

        Public so tests (and a virtual clock) can drive the lease without the background loop.
        """
        sent_at = self._clock.now()
        try:
            async with asyncio.timeout(self._margin):
                if self._value is not None:
                    if await self._renew(keys=[self._keys.lease], args=[self._value, self._ms]):
                        self._renewed_at = sent_at
                        self._set_healthy(None)
                        return self._ttl / 3
                    self._lost("the lease expired or another guard took it")
                taken, number = await self._acquire(
                    keys=[self._keys.lease, self._keys.epoch],
                    args=[f"{self._holder}|{self._token}", self._ms],
                )
        except REDIS_DOWN as exc:
            self._set_healthy(exc)
            return min(self._ttl / 3, 1.0)
        self._set_healthy(None)
        if taken:
            self._epoch = int(number)
            self._value = f"{self._epoch}|{self._holder}|{self._token}"
            self._renewed_at = sent_at
            log.warning("lease_acquired", extra={"epoch": self._epoch, "holder": self._holder})
            return self._ttl / 3
        # Someone holds it: look again just after it would expire, with jitter so that N
        # watchers do not all knock at the same millisecond (the script is atomic either way).
        until_expiry = max(int(number), 0) / 1000
        return min(self._ttl / 3, until_expiry + random.uniform(0.01, 0.05))  # noqa: S311

    @property
    def _ms(self) -> int:
        return max(1, int(self._ttl * 1000))

    def _lost(self, why: str) -> None:
        self._value = None
        self._renewed_at = None
        log.error("lease_lost", extra={"epoch": self._epoch, "holder": self._holder, "detail": why})

    def _set_healthy(self, error: BaseException | None) -> None:
        if error is not None and self._healthy:
            self._healthy = False
            log.error(
                "coordination_down",
                extra={
                    "error_type": type(error).__name__,
                    "detail": "Redis unreachable: no top-up",
                },
            )
        elif error is None and not self._healthy:
            self._healthy = True
            log.warning("coordination_recovered", extra={"holder": self._holder})

    async def _loop(self, delay: float) -> None:
        # Pacing is real time (not the injected clock): Redis expires the lease in real time.
        while not self._stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), timeout=max(delay, 0.0))
            if self._stopping.is_set():
                return
            try:
                delay = await self.tick()
            except Exception:  # a bug must not kill the loop silently; the lease then goes stale
                log.exception("lease_step_failed")
                self._set_healthy(RuntimeError("lease step failed"))
                delay = min(self._ttl / 3, 1.0)
