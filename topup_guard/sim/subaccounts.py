"""Subaccounts and balance transfers: the records and the checks Vonage applies to a transfer.

A subaccount either shares the primary's balance (its ``balance`` and ``credit_limit`` are shown as
null) or has its own. Transfers move money only between the primary and one of its own
subaccounts with its own balance; the amount must be a positive number no larger than what the
source can give (its balance minus its credit limit, which is zero or negative).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from topup_guard.sim.refusals import SimRefusal


@dataclass(slots=True)
class SimSubaccount:
    """One subaccount. ``balance`` is None when it uses the primary account's balance."""

    api_key: str
    name: str
    use_primary_account_balance: bool
    balance: Decimal | None
    credit_limit: Decimal | None
    created_at: str
    suspended: bool = False


@dataclass(frozen=True, slots=True)
class Transfer:
    """One balance transfer, as ``POST .../balance-transfers`` reports it."""

    id: str
    from_key: str
    to_key: str
    amount: Decimal
    reference: str | None
    created_at: str
    t: float


def parse_amount(raw: object) -> Decimal:
    """The transfer amount: a positive JSON number (strings and booleans are refused)."""
    if isinstance(raw, bool) or not isinstance(raw, int | float | Decimal):
        raise _invalid("amount", "Only positive JSON numbers are allowed")
    try:
        amount = Decimal(str(raw))
    except InvalidOperation:
        raise _invalid("amount", "Only positive JSON numbers are allowed") from None
    if not amount.is_finite() or amount <= 0:
        raise _invalid("amount", "Only positive JSON numbers are allowed")
    return amount


def check_pair(
    primary: str, subs: dict[str, SimSubaccount], from_key: object, to_key: object
) -> tuple[str, str]:
    """``(from, to)``, or a refusal unless primary <-> one of its own-balance subaccounts."""
    if not isinstance(from_key, str) or not from_key:
        raise _invalid("from", "Is required")
    if not isinstance(to_key, str) or not to_key:
        raise _invalid("to", "Is required")
    if from_key == to_key:
        raise _invalid("from", "From and To accounts must be different")
    other = to_key if from_key == primary else from_key if to_key == primary else None
    sub = subs.get(other) if other is not None else None
    if sub is None or sub.use_primary_account_balance:
        raise SimRefusal(
            "invalid-transfer",
            "Transfers are only allowed between a primary account and its subaccount",
        )
    return from_key, to_key


def _invalid(name: str, reason: str) -> SimRefusal:
    return SimRefusal(
        "transfer-validation",
        "The request failed due to validation errors",
        [{"name": name, "reason": reason}],
    )
