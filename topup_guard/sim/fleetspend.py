"""The subaccounts' demand inside ``SimAccount``: which demands exist, and the controls for them.

``FleetSpend`` keeps only subaccounts that demand anything (so 1,000 quiet ones cost nothing) and
splits them by whose balance they spend: own-balance demands are advanced lazily, when someone
looks at the subaccounts (``AccountExtras.subaccounts``), shared-balance ones by ``SimAccount``
on the primary's timeline. ``FleetExtras`` is the part of ``SimAccount`` that sets them up from a
scenario and steers them (the simulator's ``/_sim/subaccounts/{key}``, a backtest's fleet trace).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from decimal import Decimal
from typing import TYPE_CHECKING

from topup_guard.sim.extras import AccountExtras
from topup_guard.sim.spend import SpendProfile
from topup_guard.sim.subaccounts import SimSubaccount
from topup_guard.sim.subspend import OwnPurse, Purse, SubaccountFigures, SubDemand

if TYPE_CHECKING:
    from topup_guard.sim.scenario import Scenario


class FleetSpend:
    """The subaccounts that demand anything, split by whose balance they spend."""

    def __init__(self, primary: Purse, price: Decimal) -> None:
        self.primary = primary
        self.price = price
        self.by_key: dict[str, SubDemand] = {}
        self.own: list[SubDemand] = []  # own balance, advanced lazily
        self.shared: list[SubDemand] = []  # the primary's balance, on the primary's timeline
        self.synced_to = float("-inf")

    def demand_of(self, sub: SimSubaccount, t: float) -> SubDemand:
        """The subaccount's demand record, made (empty, at ``t``) on first use."""
        demand = self.by_key.get(sub.api_key)
        if demand is None:
            purse = self.primary if sub.use_primary_account_balance else OwnPurse(sub)
            demand = self.by_key[sub.api_key] = SubDemand(sub.api_key, purse, self.price, t)
        return demand

    def refresh(self) -> None:
        """Rebuild the lists of what needs advancing: only demands with something left."""
        live = [d for d in self.by_key.values() if d.active]
        self.own = [d for d in live if isinstance(d.purse, OwnPurse)]
        self.shared = [d for d in live if not isinstance(d.purse, OwnPurse)]

    def sync_own(self, t: float) -> None:
        """Advance every own-balance demand to ``t`` (a no-op when already there)."""
        if t <= self.synced_to:
            return
        self.synced_to = t
        spent = False
        for demand in self.own:
            demand.advance_to(t)
            spent = spent or not demand.active
        if spent:
            self.refresh()

    def credited(self, key: str, t: float) -> None:
        demand = self.by_key.get(key)
        if demand is not None:
            demand.credited(t)

    def credited_primary(self, t: float) -> None:
        for demand in self.shared:
            demand.credited(t)

    def figures(self, t: float) -> dict[str, SubaccountFigures]:
        return {key: d.figures(t) for key, d in self.by_key.items()}


class FleetExtras(AccountExtras):
    """Subaccounts' demand: set up, steered and reported. ``SimAccount`` sets ``_fleet``."""

    _fleet: FleetSpend
    _now: float

    def add_scenario_subaccounts(
        self,
        scenario: Scenario,
        traces: Mapping[str, Sequence[tuple[float, Decimal]]],
        start: float,
    ) -> None:
        """The scenario's subaccounts, each with its demand: the scenario's spend keys and its
        events in ``traces`` (a key the scenario does not name is a ValueError)."""
        rest = {k: v for k, v in traces.items() if k != "primary"}
        for sub in scenario.subaccounts:
            key = sub["api_key"]
            self.add_subaccount(
                key,
                name=sub.get("name") or "",
                balance=sub.get("balance"),
                secret=sub.get("secret") or "SubSecret1",
                credit_limit=sub.get("credit_limit") or Decimal(0),
            ).suspended = bool(sub.get("suspended"))
            profile, rate = sub.get("profile"), sub.get("spend_rate")
            if profile is not None or rate is not None or key in rest:
                self._set_demand(key, start, profile, rate, rest.pop(key, ()))
        if rest:
            raise ValueError(f"fleet trace: no subaccount {sorted(rest)[0]!r} in the scenario")
        self._fleet.refresh()  # once, not once per subaccount: 1,000 of them load in a blink

    def _sync_subaccounts(self) -> None:
        self._fleet.sync_own(self._now)

    def _subaccount_credited(self, api_key: str) -> None:
        self._fleet.credited(api_key, self._now)

    def set_subaccount_demand(
        self,
        api_key: str,
        t: float,
        *,
        profile: SpendProfile | None = None,
        rate: Decimal | None = None,
        trace: Iterable[tuple[float, Decimal]] = (),
    ) -> None:
        """From ``t`` on, the subaccount also demands ``profile`` (replacing an earlier one),
        a constant ``rate`` EUR/s instead of it, and the ``trace`` events (added)."""
        self._set_demand(api_key, t, profile, rate, trace)
        self._fleet.refresh()

    def _set_demand(
        self,
        api_key: str,
        t: float,
        profile: SpendProfile | None,
        rate: Decimal | None,
        trace: Iterable[tuple[float, Decimal]],
    ) -> None:
        demand = self._fleet.demand_of(self._subaccount_now(api_key, t), self._now)
        if profile is not None:
            demand.profile = profile
        if rate is not None:
            demand.rate_override = Decimal(rate)
        demand.add_trace(trace)

    def set_subaccount_spend_rate(self, api_key: str, rate: Decimal | None, t: float) -> None:
        """A constant EUR/s from ``t`` on, like ``set_spend_rate``; None restores the profile."""
        sub = self._subaccount_now(api_key, t)
        self._fleet.demand_of(sub, self._now).rate_override = None if rate is None else rate
        self._fleet.refresh()

    def set_subaccount_balance(self, api_key: str, value: Decimal, t: float) -> None:
        """An operator's correction of an own balance (not a transfer: no record)."""
        sub = self._subaccount_now(api_key, t)
        if sub.use_primary_account_balance:
            raise ValueError(f"subaccount {api_key} uses the primary account's balance")
        if value > (sub.balance or Decimal(0)):
            self._fleet.credited(api_key, self._now)
        sub.balance = Decimal(value)

    def subaccount_figures(self, t: float) -> dict[str, SubaccountFigures]:
        """Served and refused demand per subaccount that has any demand, up to ``t``."""
        self.advance_to(t)
        self._sync_subaccounts()
        return self._fleet.figures(self._now)

    def _subaccount_now(self, api_key: str, t: float) -> SimSubaccount:
        """The subaccount (refused as invalid-api-key if unknown), every demand run up to ``t``."""
        self.advance_to(t)
        return self.subaccount(api_key)
