"""The shared transfer ledger in Redis: SqliteTransferLedger's contract for N guards, fenced by the
lease.

Same semantics as the SQLite store (append-only events, single-flight per subaccount, settled
entries stay settled, references ``tg-<ledger_uid>-<id>``), with the top-up ledger's fencing
(``ledger/redis.py``): ``begin`` is refused (``FencedError``, nothing written) unless the live
lease's value starts with the writer's ``<epoch>|<holder>|``, so a deposed holder never writes
PENDING and never sends; ``transition`` is accepted from the tenure that began the entry or from
the current epoch. Every check-and-write is one Lua script (``transfer_redis_scripts``).

The ledger uid doubles as the store's generation: if it vanishes or changes (Redis restarted
without persistence, a flush), every call raises LedgerError, because transfers in doubt may have
been forgotten with it. Account filters are applied after the read (the open set is small; a
history read is the last day's).
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
from decimal import Decimal
from typing import Any

from redis.asyncio import Redis
from redis.commands.core import AsyncScript

from topup_guard.errors import LedgerError
from topup_guard.fleet import transfer_redis_scripts as lua
from topup_guard.fleet.transfer_base import (
    TransferBusyError,
    TransferEntry,
    TransferState,
    reference,
)
from topup_guard.ledger.base import FencedError
from topup_guard.ledger.redis_lease import REDIS_DOWN, RedisKeys

log = logging.getLogger("topup_guard.fleet.transfer_ledger")


class _Keys:
    """The transfer ledger's keys, in the primary account's hash tag (beside its lease)."""

    def __init__(self, keys: RedisKeys) -> None:
        base = keys.meta.removesuffix(":meta")
        self.lease, self.epoch = keys.lease, keys.epoch
        self.meta = f"{base}:transfer-meta"
        self.seq = f"{base}:transfer-seq"
        self.transfers = f"{base}:transfers"
        self.doubt = f"{base}:transfer-doubt"
        self.created = f"{base}:transfer-created"
        self.events = f"{base}:transfer-events"


class RedisTransferLedger:
    """A ``TransferLedger`` shared by every guard of one primary account (and its lease)."""

    def __init__(self, client: Redis, keys: RedisKeys, *, op_timeout: float = 5.0) -> None:
        self._client = client
        self._k = _Keys(keys)
        self._timeout = op_timeout
        self._begin = client.register_script(lua.BEGIN)
        self._transition = client.register_script(lua.TRANSITION)
        self._read = client.register_script(lua.READ)
        self._uid: str | None = None

    @property
    def ledger_uid(self) -> str:
        if self._uid is None:
            raise LedgerError("the shared transfer ledger is not open yet (await open())")
        return self._uid

    def reference_for(self, entry: TransferEntry) -> str:
        return reference(self.ledger_uid, entry.transfer_id)

    async def open(self) -> RedisTransferLedger:
        """Read (or, for the first guard ever, create) the ledger uid."""
        try:
            async with asyncio.timeout(self._timeout):
                await self._client.set(self._k.meta, secrets.token_hex(5), nx=True)
                self._uid = str(await self._client.get(self._k.meta) or "")
        except REDIS_DOWN as exc:
            raise LedgerError(
                f"the shared transfer ledger in Redis cannot be used ({type(exc).__name__}); "
                "no transfer will happen until it can"
            ) from None
        return self

    async def _run(self, script: AsyncScript, keys: list[str], args: list[str]) -> list[str]:
        if self._uid is None:
            await self.open()
        try:
            async with asyncio.timeout(self._timeout):
                reply: list[str] = await script(keys=keys, args=[*args, self.ledger_uid])
        except REDIS_DOWN as exc:
            raise LedgerError(
                f"the shared transfer ledger in Redis cannot be used ({type(exc).__name__}); "
                "no transfer will happen until it can"
            ) from None
        if reply[0] == "vanished":
            raise LedgerError(
                "the shared transfer ledger vanished from Redis (restarted without persistence, "
                "or flushed): transfers in doubt may have been forgotten. Check the recent "
                "balance transfers in the Vonage dashboard, make Redis persistent, then restart "
                "the guards"
            )
        return reply

    def _entry(self, raw: str) -> TransferEntry:
        e: dict[str, Any] = json.loads(raw)
        tid = int(e["transfer_id"])
        applied = e.get("applied_amount")
        return TransferEntry(
            transfer_id=tid,
            account=str(e["account"]),
            amount=Decimal(e["amount"]),
            reference=reference(self.ledger_uid, tid),
            state=TransferState(e["state"]),
            created_wall=float(e["created_wall"]),
            updated_wall=float(e["updated_wall"]),
            epoch=int(e["epoch"]),
            holder=str(e["holder"]),
            vonage_id=e.get("vonage_id"),
            detail=str(e.get("detail") or ""),
            reason=str(e.get("reason") or ""),
            applied_amount=None if applied is None else Decimal(applied),
            begin_epoch=int(e["begin_epoch"]),
        )

    async def begin(
        self,
        account: str,
        amount: Decimal,
        reason: str,
        wall: float,
        epoch: int,
        holder: str,
        dry_run: bool = False,
        despite_unconfirmed: bool = False,
    ) -> TransferEntry:
        if not account:
            raise ValueError("account is required")
        if not amount.is_finite() or amount <= 0:
            raise ValueError("amount must be positive")
        state = TransferState.DRY_RUN if dry_run else TransferState.PENDING
        entry = {"account": account, "amount": str(amount), "state": state.value,
                 "created_wall": repr(wall), "updated_wall": repr(wall), "epoch": str(epoch),
                 "begin_epoch": str(epoch), "holder": holder, "detail": "",
                 "reason": reason}  # fmt: skip
        k = self._k
        reply = await self._run(
            self._begin,
            [k.meta, k.lease, k.seq, k.transfers, k.doubt, k.created, k.events, k.epoch],
            [f"{epoch}|{holder}|", "1" if dry_run else "0", "1" if despite_unconfirmed else "0",
             repr(wall), json.dumps(entry), account],
        )  # fmt: skip
        if reply[0] == "fenced":
            raise FencedError(
                f"epoch {epoch} of {holder} does not hold the spending lease (current epoch "
                f"{reply[1]}); nothing was written"
            )
        if reply[0] == "busy":
            busy = self._entry(reply[1])
            raise TransferBusyError(
                f"transfer {busy.transfer_id} to {account} is still {busy.state.value}"
            )
        return self._entry(reply[1])

    async def transition(
        self,
        transfer_id: int,
        state: TransferState,
        *,
        wall: float,
        epoch: int,
        vonage_id: str | None = None,
        applied_amount: Decimal | None = None,
        detail: str = "",
    ) -> TransferEntry:
        if state in (TransferState.PENDING, TransferState.DRY_RUN):
            raise ValueError(f"an entry cannot return to {state.value}")
        patch = {"state": state.value, "updated_wall": repr(wall), "epoch": str(epoch),
                 "detail": detail}  # fmt: skip
        if vonage_id is not None:
            patch["vonage_id"] = vonage_id
        if applied_amount is not None:
            patch["applied_amount"] = str(applied_amount)
        k = self._k
        reply = await self._run(
            self._transition,
            [k.meta, k.epoch, k.transfers, k.doubt, k.events],
            [str(transfer_id), state.value, str(epoch), json.dumps(patch)],
        )
        if reply[0] == "missing":
            raise LedgerError(f"no transfer {transfer_id} in the ledger")
        if reply[0] == "fenced":
            raise FencedError(
                f"epoch {epoch} neither began transfer {transfer_id} nor is current (current "
                f"epoch {reply[1]}); nothing was written"
            )
        recorded = self._entry(reply[1])
        if reply[0] == "kept":
            log.warning(
                "transfer_transition_superseded",
                extra={"account": recorded.account, "transfer_id": transfer_id,
                       "state": recorded.state.value, "refused_state": state.value,
                       "detail": "the transfer was already settled; kept as recorded"},
            )  # fmt: skip
        return recorded

    async def _select(self, mode: str, arg: str = "") -> list[TransferEntry]:
        k = self._k
        reply = await self._run(
            self._read, [k.meta, k.transfers, k.doubt, k.created, k.seq], [mode, arg]
        )
        return sorted((self._entry(raw) for raw in reply[1:]), key=lambda e: e.transfer_id)

    @staticmethod
    def _of(entries: list[TransferEntry], account: str | None) -> list[TransferEntry]:
        return entries if account is None else [e for e in entries if e.account == account]

    async def entry(self, transfer_id: int) -> TransferEntry | None:
        found = await self._select("one", str(transfer_id))
        return found[0] if found else None

    async def unresolved(self, account: str | None = None) -> list[TransferEntry]:
        doubt = self._of(await self._select("doubt"), account)
        return [e for e in doubt if e.state.unresolved]

    async def in_doubt(self, account: str | None = None) -> list[TransferEntry]:
        return [e for e in self._of(await self._select("doubt"), account) if e.state.in_doubt]

    async def since(self, wall: float, account: str | None = None) -> list[TransferEntry]:
        return self._of(await self._select("since", repr(wall)), account)

    async def latest(self, limit: int, account: str | None = None) -> list[TransferEntry]:
        if limit <= 0:
            return []
        if account is None:
            return await self._select("latest", str(limit))
        return self._of(await self._select("all"), account)[-limit:]

    async def close(self) -> None:
        try:
            await self._client.aclose()
        except REDIS_DOWN:
            log.warning("transfer_ledger_close_failed")
