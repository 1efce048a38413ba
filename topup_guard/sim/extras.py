"""The account's secrets, settings and subaccounts: the parts of ``SimAccount`` beside money flow.

A base class of ``SimAccount`` so that the model stays one object (the server and the backtest
hold one account), while the money-flow module stays short. Times are simulated seconds; the
ISO-8601 timestamps Vonage shows are ``epoch + t``, so runs with the same seed repeat exactly.
"""

from __future__ import annotations

import random
import uuid
from datetime import UTC, datetime
from decimal import Decimal

from topup_guard.sim.api_secrets import SecretStore, SimSecret
from topup_guard.sim.refusals import SimRefusal
from topup_guard.sim.subaccounts import SimSubaccount, Transfer, check_pair, parse_amount

HTTP_FORWARD_METHODS = ("GET_QUERY_PARAMS", "POST_QUERY_PARAMS", "POST_JSON")


class AccountExtras:
    """Secrets (per API key), settings, subaccounts and balance transfers of one account."""

    def __init__(self, *, api_key: str, api_secret: str, seed: int, epoch: float) -> None:
        self.api_key = api_key
        self.epoch = epoch
        # A separate stream, so creating ids never shifts the reload timing.
        self._ids = random.Random(f"ids-{seed}")  # noqa: S311 - repeatable, not crypto
        self._stores = {api_key: SecretStore(api_secret, self.iso(0.0, millis=False), self.new_id)}
        self._subaccounts: dict[str, SimSubaccount] = {}
        self.transfers: list[Transfer] = []
        self.primary_name = "Primary account"
        self.mo_callback_url = ""
        self.dr_callback_url = ""
        self.http_forward_method = "POST_QUERY_PARAMS"
        self.max_outbound_request = 30
        self.max_inbound_request = 30
        self.max_calls_per_second = 30

    # Provided by SimAccount.
    def advance_to(self, t: float) -> None:
        raise NotImplementedError

    @property
    def balance(self) -> Decimal:
        raise NotImplementedError

    def _debit_primary(self, amount: Decimal) -> None:
        raise NotImplementedError

    def _credit_primary(self, amount: Decimal) -> None:
        raise NotImplementedError

    def _sync_subaccounts(self) -> None:
        """Bring every subaccount's own-balance demand up to the account's time (lazily)."""

    def _subaccount_credited(self, api_key: str) -> None:
        """Money arrived in a subaccount: its ongoing exhaustion, if any, ends now."""

    @property
    def subaccounts(self) -> dict[str, SimSubaccount]:
        """Every subaccount by key, its balance brought up to the account's time first."""
        self._sync_subaccounts()
        return self._subaccounts

    # --- helpers --------------------------------------------------------------------------
    def new_id(self) -> str:
        """A UUID4-shaped id from the seeded stream."""
        return str(uuid.UUID(int=self._ids.getrandbits(128), version=4))

    def iso(self, t: float, *, millis: bool = True) -> str:
        """Vonage's UTC timestamp for simulated time ``t``."""
        moment = datetime.fromtimestamp(self.epoch + t, UTC)
        if millis:
            return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
        return moment.strftime("%Y-%m-%dT%H:%M:%SZ")

    # --- authentication and secrets -------------------------------------------------------
    def authenticate(self, api_key: str, secret: str) -> bool:
        """True when ``api_key`` is the primary key and ``secret`` one of its current secrets."""
        return api_key == self.api_key and self._stores[self.api_key].matches(secret)

    def secrets_of(self, api_key: str) -> SecretStore:
        """The secrets of the primary or of one of its subaccounts (refused as invalid-api-key)."""
        store = self._stores.get(api_key)
        if store is None:
            raise SimRefusal("invalid-api-key", f"API key '{api_key}' does not exist")
        return store

    def create_secret(self, api_key: str, value: object, t: float) -> SimSecret:
        self.advance_to(t)
        return self.secrets_of(api_key).create(value, self.iso(t, millis=False))

    # --- settings -------------------------------------------------------------------------
    def update_settings(
        self, *, mo: str | None = None, dr: str | None = None, method: str | None = None
    ) -> None:
        """``POST /account/settings``: unset fields stay, an empty string clears."""
        if method is not None and method not in HTTP_FORWARD_METHODS:
            raise ValueError("httpForwardMethod")
        if mo is not None:
            self.mo_callback_url = mo
        if dr is not None:
            self.dr_callback_url = dr
        if method is not None:
            self.http_forward_method = method

    # --- subaccounts ----------------------------------------------------------------------
    def add_subaccount(
        self,
        api_key: str,
        *,
        name: str = "",
        balance: Decimal | None = None,
        secret: str = "SubSecret1",  # noqa: S107 - simulated subaccount default
        credit_limit: Decimal = Decimal(0),
    ) -> SimSubaccount:
        """Add a subaccount; ``balance=None`` makes it share the primary's balance."""
        shared = balance is None
        sub = SimSubaccount(
            api_key=api_key,
            name=name or api_key,
            use_primary_account_balance=shared,
            balance=None if shared else Decimal(str(balance)),
            credit_limit=None if shared else credit_limit,
            created_at=self.iso(0.0),
        )
        self._subaccounts[api_key] = sub
        self._stores[api_key] = SecretStore(secret, self.iso(0.0, millis=False), self.new_id)
        return sub

    def subaccount(self, api_key: str) -> SimSubaccount:
        sub = self.subaccounts.get(api_key)
        if sub is None:
            raise SimRefusal("invalid-api-key", f"API key '{api_key}' does not exist")
        return sub

    def transfer(
        self, from_key: object, to_key: object, amount: object, reference: object, t: float
    ) -> Transfer:
        """Move balance between the primary and one of its own-balance subaccounts."""
        self.advance_to(t)
        value = parse_amount(amount)
        from_key, to_key = check_pair(self.api_key, self.subaccounts, from_key, to_key)
        if from_key == self.api_key:
            available = self.balance
        else:
            src = self.subaccounts[from_key]
            available = (src.balance or Decimal(0)) - (src.credit_limit or Decimal(0))
        if value > available:
            raise SimRefusal("insufficient-credit", "Insufficient Credit")
        for key, delta in ((from_key, -value), (to_key, value)):
            if key == self.api_key:
                (self._credit_primary if delta > 0 else self._debit_primary)(abs(delta))
            else:
                sub = self._subaccounts[key]
                sub.balance = (sub.balance or Decimal(0)) + delta
                if delta > 0:
                    self._subaccount_credited(key)
        record = Transfer(
            id=self.new_id(),
            from_key=from_key,
            to_key=to_key,
            amount=value,
            reference=reference if isinstance(reference, str) else None,
            created_at=self.iso(t),
            t=t,
        )
        self.transfers.append(record)
        return record

    def list_transfers(
        self,
        start_date: str | None,
        end_date: str | None = None,
        subaccounts: list[str] | None = None,
    ) -> list[Transfer]:
        """Transfers made in ``[start_date, end_date)``; ``start_date`` is required (ISO-8601)."""
        start = self._parse_date("start_date", start_date)
        end = self._parse_date("end_date", end_date) if end_date is not None else float("inf")
        wanted = set(subaccounts or [])
        return [
            tr
            for tr in self.transfers
            if start <= self.epoch + tr.t < end
            and (not wanted or tr.from_key in wanted or tr.to_key in wanted)
        ]

    @staticmethod
    def _parse_date(name: str, raw: str | None) -> float:
        if raw is None or raw == "":
            reason = "Is required"
        else:
            try:
                moment = datetime.fromisoformat(raw.replace("Z", "+00:00"))
            except ValueError:
                reason = "Malformed"
            else:
                return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()
        raise SimRefusal(
            "transfer-validation",
            "The request failed due to validation errors",
            [{"name": name, "reason": reason}],
        )
