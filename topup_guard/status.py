"""What the guard knows right now, for /livez, /readyz and /status. Written by the engine only."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from topup_guard.events import TopUpFinished

if TYPE_CHECKING:
    from topup_guard.policy.decide import Decision
    from topup_guard.policy.forecast import Forecast


@dataclass
class GuardStatus:
    started_at: float = 0.0  # clock.now() at start
    heartbeat: float | None = None  # clock.now() at the end of the latest loop iteration
    last_balance_at: float | None = None  # clock.now() of the latest successful balance read
    balance: Decimal | None = None
    auto_reload: bool | None = None
    forecast: Forecast | None = None
    decision: Decision | None = None
    last_topup: TopUpFinished | None = None
    topups_last_hour: int = 0
    topups_last_day: int = 0
    amount_last_day: Decimal = Decimal(0)
    breaker_open: bool = False
    may_spend: bool = True
    dry_run: bool = False
    poll_interval: float = 60.0  # the configured longest poll gap, for freshness checks
    active_conditions: dict[str, str] = field(default_factory=dict)
    in_flight: list[dict[str, object]] = field(default_factory=list)  # credits on their way
    learnt_amount: Decimal | None = None  # when TOPUP_GUARD_TOPUP_AMOUNT is unset
    credit_latency_s: float | None = None  # the slowest recent confirmed credit
    misreads: int = 0  # balance answers dropped (implausible, reverted, out of order)
    one_off_debits: list[dict[str, object]] = field(default_factory=list)
    unexplained_credits_eur: Decimal = Decimal(0)
    remembered_rate: float = 0.0  # EUR/s this time of day brought on earlier days
    largest_burst: float = 0.0  # EUR/s, the largest remembered
    # Fleet mode: builds the ``fleet`` part of /status on request (every account), else None.
    fleet: Callable[[], dict[str, Any]] | None = None
