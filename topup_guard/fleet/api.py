"""What the fleet loop needs from Vonage: ``VonageClient`` satisfies it, so does the backtest's
in-process fleet (``sim/fleet.py``)."""

from __future__ import annotations

from decimal import Decimal
from typing import Protocol

from topup_guard.model import Balance, SubaccountsOverview, Transfer


class FleetAPI(Protocol):
    async def list_subaccounts(self) -> SubaccountsOverview: ...

    async def transfer_balance(
        self, from_key: str, to_key: str, amount: Decimal, reference: str | None = None
    ) -> Transfer: ...

    async def list_balance_transfers(
        self, start_date: str, end_date: str | None = None, subaccount: str | None = None
    ) -> list[Transfer]: ...

    async def get_balance(self) -> Balance: ...

    async def top_up(self, trx: str) -> None: ...
