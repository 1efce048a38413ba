"""``InProcessFleet``: the fleet API over an in-process ``SimAccount``, for backtests.

What the HTTP simulator and ``VonageClient`` would give, without sockets: the same models
(``SubaccountsOverview``, ``Transfer``, ``Balance``) and the same exceptions, because a refusal is
turned into the simulator's own wire answer and mapped by the client's own ``errormap``. Each call
takes its latency on the clock, then advances the account to the clock's time, and is counted per
endpoint. Faults can be queued per endpoint with the simulator's kind names: ``error_500_before``
and ``reset_before`` (not applied), ``error_500_after``, ``timeout_after`` and ``reset_after``
(applied, then the answer is lost: ``ServerError`` or ``OutcomeUnknownError``).
"""

from __future__ import annotations

import uuid
from collections import Counter, deque
from collections.abc import Callable
from decimal import Decimal
from typing import Literal, NoReturn, TypeVar, get_args

from topup_guard.clock import Clock
from topup_guard.errors import OutcomeUnknownError
from topup_guard.model import Balance, Subaccount, SubaccountsOverview, Transfer
from topup_guard.sim import wire
from topup_guard.sim.account import SimAccount
from topup_guard.sim.refusals import SimRefusal
from topup_guard.sim.subaccounts import SimSubaccount
from topup_guard.sim.subaccounts import Transfer as SimTransfer
from topup_guard.vonage import errormap, payloads
from topup_guard.vonage.parsing import Exchange, Response

T = TypeVar("T")
FleetFault = Literal[
    "error_500_before", "reset_before", "error_500_after", "timeout_after", "reset_after"
]
FLEET_FAULTS: tuple[str, ...] = get_args(FleetFault)
# Endpoint names, as counted in ``calls`` and addressed by ``add_fault``: the simulator's, except
# that listing transfers is told apart from making one (the fleet loop's budget differs).
ENDPOINTS = ("subaccounts", "balance-transfers", "balance-transfers-list", "get-balance", "top-up")


class InProcessFleet:
    """A primary account and its subaccounts as the API shows them; virtual time, no sockets."""

    def __init__(
        self,
        account: SimAccount,
        clock: Clock,
        *,
        balance_latency_s: float = 0.0,
        topup_latency_s: float = 0.0,
        api_latency_s: float = 0.0,
    ) -> None:
        self._account = account
        self._clock = clock
        self._latency = {
            "get-balance": balance_latency_s,
            "top-up": topup_latency_s,
            "subaccounts": api_latency_s,
            "balance-transfers": api_latency_s,
            "balance-transfers-list": api_latency_s,
        }
        self.calls: Counter[str] = Counter()
        self._faults: dict[str, deque[FleetFault]] = {e: deque() for e in ENDPOINTS}
        self._models: dict[str, tuple[tuple[object, ...], Subaccount]] = {}

    @property
    def total_calls(self) -> int:
        return sum(self.calls.values())

    def add_fault(self, endpoint: str, kind: FleetFault, count: int = 1) -> None:
        """The next ``count`` calls of ``endpoint`` fail as ``kind``."""
        if endpoint not in self._faults:
            raise ValueError(f"unknown endpoint {endpoint!r}; known: {', '.join(ENDPOINTS)}")
        if kind not in FLEET_FAULTS:
            raise ValueError(f"unknown fault {kind!r}; known: {', '.join(FLEET_FAULTS)}")
        self._faults[endpoint].extend([kind] * count)

    def pending_faults(self) -> dict[str, int]:
        return {e: len(q) for e, q in self._faults.items() if q}

    # --- the FleetAPI -----------------------------------------------------------------------
    async def list_subaccounts(self) -> SubaccountsOverview:
        path = f"/accounts/{self._account.api_key}/subaccounts"
        return await self._call("subaccounts", "GET", path, self._overview)

    async def get_subaccount(self, subaccount_key: str) -> Subaccount:
        """One subaccount (``VonageClient.get_subaccount``); counted as a subaccounts call."""
        path = f"/accounts/{self._account.api_key}/subaccounts/{subaccount_key}"

        def one(_: float) -> Subaccount:
            return self._subaccount(self._account.subaccount(subaccount_key))

        return await self._call("subaccounts", "GET", path, one)

    async def transfer_balance(
        self, from_key: str, to_key: str, amount: Decimal, reference: str | None = None
    ) -> Transfer:
        payloads.transfer_json(from_key, to_key, amount, reference)  # as VonageClient: ValueError
        path = f"/accounts/{self._account.api_key}/balance-transfers"

        def move(t: float) -> Transfer:
            record = self._account.transfer(from_key, to_key, amount, reference, t)
            return self._transfer(record)

        return await self._call("balance-transfers", "POST", path, move)

    async def list_balance_transfers(
        self, start_date: str, end_date: str | None = None, subaccount: str | None = None
    ) -> list[Transfer]:
        if not start_date:
            raise ValueError("start_date is required")  # as VonageClient, before any call
        path = f"/accounts/{self._account.api_key}/balance-transfers"

        def listing(_: float) -> list[Transfer]:
            wanted = [subaccount] if subaccount is not None else None
            found = self._account.list_transfers(start_date, end_date, wanted)
            return [self._transfer(tr) for tr in found]

        return await self._call("balance-transfers-list", "GET", path, listing)

    async def get_balance(self) -> Balance:
        def read(_: float) -> Balance:
            return Balance(self._account.balance, self._account.auto_reload)

        return await self._call("get-balance", "GET", "/account/get-balance", read)

    async def top_up(self, trx: str) -> None:
        def charge(t: float) -> None:
            self._account.top_up(trx, t)

        await self._call("top-up", "POST", "/account/top-up", charge)

    # --- one call -----------------------------------------------------------------------------
    async def _call(
        self, endpoint: str, method: str, path: str, act: Callable[[float], T]
    ) -> T:  # fmt: skip
        self.calls[endpoint] += 1
        latency = self._latency[endpoint]
        if latency > 0:
            await self._clock.sleep(latency)
        t = self._clock.now()
        self._account.advance_to(t)
        queue = self._faults[endpoint]
        fault = queue.popleft() if queue else None
        where = Exchange(method, path)
        if fault == "reset_before":
            raise OutcomeUnknownError(where.message("outcome unknown (ServerDisconnectedError)"))
        if fault == "error_500_before":
            _raise_wire(None, method, path, endpoint)
        try:
            result = act(t)
        except SimRefusal as refusal:
            _raise_wire(refusal, method, path, endpoint)
        if fault == "error_500_after":
            _raise_wire(None, method, path, endpoint)
        if fault in ("timeout_after", "reset_after"):
            kind = "TimeoutError" if fault == "timeout_after" else "ServerDisconnectedError"
            raise OutcomeUnknownError(where.message(f"outcome unknown ({kind})"))
        return result

    # --- the models, as the client parses them from the simulator's answers --------------------
    def _overview(self, _: float) -> SubaccountsOverview:
        a = self._account
        subs = list(a.subaccounts.values())
        own = [s for s in subs if not s.use_primary_account_balance]
        primary = Subaccount(
            api_key=a.api_key,
            name=a.primary_name,
            balance=a.balance,
            credit_limit=Decimal(0),
            use_primary_account_balance=False,
            suspended=False,
            created_at=a.iso(0.0),
        )
        return SubaccountsOverview(
            primary=primary,
            subaccounts=tuple(self._subaccount(s) for s in subs),
            total_balance=a.balance + sum((s.balance or Decimal(0) for s in own), Decimal(0)),
            total_credit_limit=sum((s.credit_limit or Decimal(0) for s in own), Decimal(0)),
        )

    def _subaccount(self, sub: SimSubaccount) -> Subaccount:
        # The frozen model is dear to build; a subaccount that did not change is shown again
        # (1,000 of them: 0.3 ms a list call instead of 2 ms).
        seen = (sub.balance, sub.credit_limit, sub.suspended, sub.name)
        cached = self._models.get(sub.api_key)
        if cached is not None and cached[0] == seen:
            return cached[1]
        model = Subaccount(
            api_key=sub.api_key,
            name=sub.name,
            balance=sub.balance,
            credit_limit=sub.credit_limit,
            use_primary_account_balance=sub.use_primary_account_balance,
            suspended=sub.suspended,
            created_at=sub.created_at,
        )
        self._models[sub.api_key] = (seen, model)
        return model

    def _transfer(self, tr: SimTransfer) -> Transfer:
        primary = self._account.api_key
        return Transfer(
            id=tr.id,
            from_key=tr.from_key,
            to_key=tr.to_key,
            amount=tr.amount,
            reference=tr.reference or "",  # the simulator answers "" for no reference
            created_at=tr.created_at,
            extra={
                "masterAccountId": primary,
                "_links": {"self": {"href": f"/accounts/{primary}/balance-transfers/{tr.id}"}},
            },
        )


def _raise_wire(refusal: SimRefusal | None, method: str, path: str, endpoint: str) -> NoReturn:
    """Raise what ``VonageClient`` raises for the simulator's answer to ``refusal`` (None: 500)."""
    rid = str(uuid.uuid4())
    if refusal is None:
        answer = wire.problem("internal-error", rid, "Please try again later")
    else:
        answer = wire.refusal(refusal, rid)
    body = answer.body if isinstance(answer.body, bytes) else b""
    headers = {"Content-Type": answer.content_type, "X-Request-Id": rid}
    resp = Response(answer.status, headers, body)
    endpoint = errormap.TOP_UP if endpoint == "top-up" else endpoint
    errormap.check(resp, Exchange(method, path, answer.status, rid), endpoint=endpoint)
    raise AssertionError(f"{method} {path}: a refusal the error map took for a success")
