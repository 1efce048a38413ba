"""What the guard tells the outside world: frozen events, emitted by the engine, never blocking.

Sinks (Slack, telemetry, logs, the status page) subscribe through ``EventSink.emit``, which must
return at once: a slow Slack or collector may never delay a top-up. Event fields hold no secrets.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum
from typing import TYPE_CHECKING, Protocol

from topup_guard.model import Balance

if TYPE_CHECKING:
    from topup_guard.policy.decide import Decision
    from topup_guard.policy.forecast import Forecast


class Condition(StrEnum):
    """A state worth announcing when it starts, while it lasts (rate-limited), and when it ends."""

    EXHAUSTION_FORECAST = (
        "exhaustion_forecast"  # exhaustion within the horizon and the guard can't act
    )
    LOW_BALANCE = "low_balance"  # balance below TOPUP_GUARD_MIN_BALANCE
    AUTORELOAD_DISABLED = "autoreload_disabled"  # Vonage says autoReload false: top-up would fail
    CAP_REACHED = "cap_reached"  # hourly/daily count or daily EUR cap used up
    BREAKER_OPEN = "breaker_open"  # N consecutive failed/unconfirmed top-ups
    UNCONFIRMED_TOPUP = "unconfirmed_topup"  # an ambiguous top-up awaits a human check
    POLL_FAILING = "poll_failing"  # the balance cannot be read
    COORDINATION_DOWN = "coordination_down"  # shared store unreachable: nobody may spend
    CREDIT_MISSING = "credit_missing"  # Vonage confirmed a top-up; its credit never showed
    BALANCE_MISREAD = "balance_misread"  # an implausible or reverted balance answer was dropped
    ONE_OFF_DEBIT = "one_off_debit"  # a lump debit, kept out of the spend rate
    MESSAGES_REFUSED = "messages_refused"  # senders report out-of-credit refusals right now
    SUBACCOUNT_LOW = "subaccount_low"  # fleet: subaccounts below their floor
    SUBACCOUNT_SUSPENDED = "subaccount_suspended"  # fleet: Vonage reports subaccounts suspended
    FLEET_SHORTFALL = "fleet_shortfall"  # fleet: the primary cannot cover what the fleet needs
    TRANSFER_IN_DOUBT = "transfer_in_doubt"  # fleet: a transfer's outcome awaits the listing


class Outcome(StrEnum):
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    UNCONFIRMED = "unconfirmed"
    DRY_RUN = "dry_run"


@dataclass(frozen=True, slots=True)
class Started:
    policy: Mapping[str, str]  # effective settings, secrets masked (Settings.masked())
    dry_run: bool
    coordination: str  # in words, e.g. "single replica (SQLite ledger)" / "shared lease (Redis)"


@dataclass(frozen=True, slots=True)
class Stopped:
    reason: str


@dataclass(frozen=True, slots=True)
class PollCompleted:
    wall: float  # Unix seconds
    balance: Balance
    forecast: Forecast | None
    decision: Decision
    duration_s: float  # time the balance read took
    poll_delay_s: float  # how late this poll started against its schedule
    account: str = ""  # the API key (not secret) as a label


@dataclass(frozen=True, slots=True)
class PollFailed:
    wall: float
    error_type: str
    message: str  # safe text: no credentials, no URLs with queries


@dataclass(frozen=True, slots=True)
class TopUpFinished:
    """One top-up attempt reached a final state (or a dry-run decision to top up was made)."""

    attempt_id: int
    outcome: Outcome
    balance_before: Decimal
    expected_amount: Decimal | None
    credited: Decimal | None  # credit observed in the balance, when verified
    balance_after: Decimal | None
    reason: str  # the decision's reason
    rate: float  # EUR/s acted on
    time_to_exhaustion: float
    detail: str  # what happened, in words
    action_needed: str | None  # what a person must do now, if anything
    requests: int  # POSTs sent (a connect-error retry may send more than one that never arrived)
    evidence: str | None  # "api" | "balance step +X" | None
    wall: float = 0.0


@dataclass(frozen=True, slots=True)
class ConditionsChanged:
    """The set of active conditions after a cycle (the notifier de-duplicates and groups).

    ``clears_at`` holds, for a condition that ends by itself with time, the wall-clock Unix
    seconds when it will: ``BREAKER_OPEN`` -> when the cooldown after the last failed top-up
    ends and one trial is allowed; ``CAP_REACHED`` -> when enough of the counted top-ups have
    left their rolling windows for one more (``topup_guard.clears``). Absent: not known; the
    messages then name the setting instead of a time.
    """

    wall: float
    active: Mapping[Condition, str] = field(default_factory=dict)  # condition -> detail text
    clears_at: Mapping[Condition, float] = field(default_factory=dict)  # condition -> Unix s


@dataclass(frozen=True, slots=True)
class TransferFinished:
    """A balance transfer reached a state worth telling (applied, refused, in doubt, settled)."""

    wall: float
    account: str  # the subaccount's API key (not a secret)
    name: str | None
    transfer_id: int
    state: str  # a TransferState value
    amount: Decimal
    reference: str
    detail: str
    settled_late: bool  # settled by the listing after an ambiguous answer
    action: str | None = None  # what a person should do, when the refusal says (SafeTransfer)


@dataclass(frozen=True, slots=True)
class FleetCycle:
    """One fleet cycle: every own-balance subaccount's spendable EUR (the metrics' gauges)."""

    wall: float
    balances: Mapping[str, Decimal] = field(default_factory=dict)
    transfers: int = 0
    list_calls: int = 0  # since start
    duration_s: float = 0.0


Event = (
    Started
    | Stopped
    | PollCompleted
    | PollFailed
    | TopUpFinished
    | ConditionsChanged
    | TransferFinished
    | FleetCycle
)


class EventSink(Protocol):
    def emit(self, event: Event) -> None:
        """Take the event and return at once (queue it if work is needed)."""


class Fanout:
    """Emits to several sinks; one failing sink never stops the others or the engine."""

    def __init__(self, sinks: list[EventSink] | None = None) -> None:
        self.sinks: list[EventSink] = list(sinks or [])

    def add(self, sink: EventSink) -> None:
        self.sinks.append(sink)

    def emit(self, event: Event) -> None:
        for sink in self.sinks:
            try:
                sink.emit(event)
            except Exception:  # a broken sink must never break the guard
                logging.getLogger("topup_guard.events").exception("event_sink_failed")


class Recorder:
    """A sink that keeps every event, for tests and the demo."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    def emit(self, event: Event) -> None:
        self.events.append(event)

    def of(self, kind: type) -> list[Event]:
        return [e for e in self.events if isinstance(e, kind)]
