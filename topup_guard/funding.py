"""Funding an account: one step, two implementations, each with its own verification.

The decision says "this account needs ``amount`` EUR now"; *how* the money comes is a funding
step. A card top-up (``topup.SafeTopUp``: the primary's stored payment, ``trx``) and a balance
transfer (``fleet.transfer.SafeTransfer``: from the primary to a subaccount) both
1. record the intent durably before the request leaves (the top-up or the transfer ledger),
2. send one careful request, resent only when it provably never arrived,
3. report what the answer proves: ``APPLIED``, ``REFUSED`` (nothing moved), ``AMBIGUOUS`` (may
   have moved), ``NOT_STARTED`` (nothing was sent: lease lost, ledger busy or unusable) or
   ``DRY_RUN``.
What differs is how an ambiguous answer is settled, so that stays with each implementation:
a top-up by the balance step between consecutive readings (``settling.py``; Vonage lists no
top-ups), a transfer by listing the primary's transfers for its reference (``settle_open``).
"""

from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum
from typing import Generic, Protocol, TypeVar

E = TypeVar("E")


class FundOutcome(StrEnum):
    APPLIED = "applied"  # Vonage answered that the money moved
    REFUSED = "refused"  # a definite refusal: nothing moved
    AMBIGUOUS = "ambiguous"  # may have moved; settled by the implementation's own evidence
    NOT_STARTED = "not_started"  # nothing was sent
    DRY_RUN = "dry_run"  # recorded, never sent


@dataclass(frozen=True, slots=True)
class FundRequest:
    """What the decision asks for: ``amount`` EUR (None: the top-up's own amount) to ``account``."""

    account: str
    amount: Decimal | None
    reason: str
    balance_before: Decimal = Decimal(0)
    rate: float = 0.0  # EUR/s acted on
    time_to_exhaustion: float = math.inf


@dataclass(frozen=True, slots=True)
class FundResult(Generic[E]):
    outcome: FundOutcome
    entry: E | None  # the ledger entry (an ``Attempt`` or a ``TransferEntry``), if one was made
    detail: str
    action: str | None = None  # what a person should do, when the answer says
    requests: int = 0


class Funding(Protocol[E]):
    """A way to fund an account (``SafeTopUp.fund``, ``SafeTransfer.fund``)."""

    async def fund(
        self, request: FundRequest, *, stop: asyncio.Event | None = None
    ) -> FundResult[E]: ...
