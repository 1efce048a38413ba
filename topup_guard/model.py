"""Plain values passed between layers. Frozen, so nothing downstream can change what was seen."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal


@dataclass(frozen=True, slots=True)
class Balance:
    """One answer of ``GET /account/get-balance``: EUR, sub-cent precision, never a float."""

    value: Decimal
    auto_reload: bool | None
    request_id: str | None = None


@dataclass(frozen=True, slots=True)
class BalanceSample:
    """A balance seen at clock time ``t`` (seconds, the engine's clock)."""

    t: float
    balance: Decimal


@dataclass(frozen=True, slots=True)
class AccountSettings:
    """The answer of ``POST /account/settings`` (current values, whether or not changed)."""

    mo_callback_url: str | None
    dr_callback_url: str | None
    max_outbound_request: int | None
    max_inbound_request: int | None
    max_calls_per_second: int | None


@dataclass(frozen=True, slots=True)
class Secret:
    """An API secret's metadata. Vonage never returns the secret's value."""

    id: str
    created_at: str


@dataclass(frozen=True, slots=True)
class Subaccount:
    """The primary account or one subaccount. ``balance`` is None when it shares the primary's."""

    api_key: str
    name: str | None
    balance: Decimal | None
    credit_limit: Decimal | None
    use_primary_account_balance: bool
    suspended: bool
    created_at: str | None


@dataclass(frozen=True, slots=True)
class SubaccountsOverview:
    """``GET /accounts/{key}/subaccounts``: every balance in one call."""

    primary: Subaccount
    subaccounts: tuple[Subaccount, ...]
    total_balance: Decimal | None = None
    total_credit_limit: Decimal | None = None


@dataclass(frozen=True, slots=True)
class Transfer:
    """A balance transfer between the primary account and a subaccount."""

    id: str
    from_key: str
    to_key: str
    amount: Decimal
    reference: str | None = None
    created_at: str | None = None
    extra: dict[str, object] = field(default_factory=dict, compare=False)
