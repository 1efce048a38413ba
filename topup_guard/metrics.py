"""The guard's metric instruments and how engine events feed them.

Names and units are a public interface (dashboards and alerts depend on them): change them only
with a changelog entry. Money is ``Decimal`` everywhere else; a metric sample is an observation
for graphs, so it is converted to float here and only here. The time to exhaustion is absent while
no spend is seen (the SDK cannot carry +Inf).

Every label takes its value from a small fixed set (``ERROR_KINDS``, ``Outcome``, ``Condition``,
the client's endpoint names, an HTTP status), never from free text or a class name, so the number
of series stays bounded. Counters and the condition gauge start at 0 for each of their label
values: a series that appears only with the first failure is invisible to ``increase()``.

| instrument                         | kind      | unit    | attributes                       |
|------------------------------------|-----------|---------|----------------------------------|
| topup_guard.build_info             | gauge     | 1       | version (always 1)               |
| topup_guard.min_balance            | gauge     | EUR     | (TOPUP_GUARD_MIN_BALANCE)        |
| topup_guard.balance                | gauge     | EUR     |                                  |
| topup_guard.spend_rate             | gauge     | EUR/s   | window = short / long            |
| topup_guard.time_to_exhaustion     | gauge     | s       |                                  |
| topup_guard.last_poll_timestamp    | gauge     | s       | (Unix time of the last good read)|
| topup_guard.last_topup_timestamp   | gauge     | s       | (Unix time of the last success)  |
| topup_guard.topups                 | counter   | {topup} | outcome                          |
| topup_guard.topped_up              | counter   | EUR     |                                  |
| topup_guard.api_calls              | counter   | {call}  | endpoint, method, status, outcome|
| topup_guard.api_call_duration      | histogram | s       | endpoint                         |
| topup_guard.poll_delay             | histogram | s       |                                  |
| topup_guard.poll_failures          | counter   | {poll}  | error_type (an ERROR_KINDS value)|
| topup_guard.notifications          | counter   | {message} | channel, result (sent/dropped/…) |
| topup_guard.slack_messages         | counter   | {message} | result (Slack only: old name) |
| topup_guard.condition              | gauge     | 1       | condition (1 active, 0 not)      |
| topup_guard.account_balance        | gauge     | EUR     | account (fleet mode: spendable)  |
| topup_guard.transfers              | counter   | {transfer} | account, state                |
| topup_guard.transferred            | counter   | EUR     | account (applied transfers)      |
| topup_guard.fleet_list_calls       | counter   | {call}  | (one per fleet cycle)            |

``account`` is an API key of the fleet (not a secret): the primary and the subaccounts the fleet
file includes, bounded by the account's own subaccounts (Vonage's limit), never free text. Only
keys a ``FleetCycle`` reported become label values: a transfer to a key not (yet) reported — one
settled at start-up before the first cycle — is counted once a cycle reports its key (a few held,
``_PENDING_MAX``). ``account_balance`` reports exactly the latest cycle's accounts, so a
subaccount deleted at Vonage (or newly excluded) stops being reported; its counters keep their
totals until the process restarts, as counters do.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from decimal import Decimal, InvalidOperation
from importlib import metadata

from opentelemetry.metrics import CallbackOptions, Meter, Observation

from topup_guard import __version__, errors
from topup_guard.events import (
    Condition,
    ConditionsChanged,
    Event,
    FleetCycle,
    Outcome,
    PollCompleted,
    PollFailed,
    Started,
    TopUpFinished,
    TransferFinished,
)

POLL_DELAY_BUCKETS = (0.1, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
CALL_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0)
SLACK_RESULTS = ("sent", "dropped", "failed")
# The Vonage calls ``run`` makes; their no-answer failures are known label sets in advance.
GUARD_CALLS = (("get-balance", "GET"), ("top-up", "POST"))
# A transfer's ledger states (``fleet/transfer_base.TransferState``), as label values.
TRANSFER_STATES = ("pending", "unknown", "succeeded", "failed", "unconfirmed", "dry_run")
# Transfers held until a cycle reports their account (a settle before the first cycle).
_PENDING_MAX = 1000

# What went wrong, as a label value. Most specific class first: RateLimitedError is an ApiError.
_KIND_OF: tuple[tuple[type[BaseException], str], ...] = (
    (errors.OutcomeUnknownError, "timeout"),  # sent, then a timeout or a reset: no answer
    (errors.TransportError, "connection"),  # never reached Vonage (connect, DNS)
    (errors.RateLimitedError, "rate_limited"),
    (errors.ServerError, "server"),
    (errors.MalformedResponseError, "malformed"),
    (errors.AuthenticationError, "auth"),
    (errors.ForbiddenError, "auth"),
    (errors.NotFoundError, "auth"),  # an unknown API key
    (errors.AutoReloadDisabledError, "refused"),
    (errors.TopUpRefusedError, "refused"),
)
ERROR_KINDS = (
    "timeout",
    "connection",
    "server",
    "rate_limited",
    "malformed",
    "auth",
    "refused",
    "other",
)


def error_kind(name: str) -> str:
    """The ``ERROR_KINDS`` value for an exception class name (anything unknown is ``other``).

    Events and call records carry the class name; it is resolved against ``topup_guard.errors``
    so a subclass added later lands in its parent's kind instead of a new label value.
    """
    cls = getattr(errors, name, None)
    if isinstance(cls, type) and issubclass(cls, BaseException):
        for base, kind in _KIND_OF:
            if issubclass(cls, base):
                return kind
    return "other"


def call_outcome(outcome: str) -> str:
    """``ok`` stays ``ok``; an exception class name becomes its error kind."""
    return "ok" if outcome == "ok" else error_kind(outcome)


def status_label(status: int | None) -> str:
    """An HTTP status as a label: ``none`` without an answer, ``other`` if not a real status."""
    if status is None:
        return "none"
    return str(status) if 100 <= status <= 599 else "other"


def build_version() -> str:
    """The installed distribution's version (the package's own when run from a checkout)."""
    try:
        return metadata.version("topup-guard")
    except metadata.PackageNotFoundError:
        return __version__


class Instruments:
    """Every instrument, created once per ``Telemetry`` on its meter, counters pre-initialised."""

    def __init__(self, meter: Meter) -> None:
        self.build_info = meter.create_gauge(
            "topup_guard.build_info",
            unit="1",
            description="Always 1; the version label says which build runs.",
        )
        self.min_balance = meter.create_gauge(
            "topup_guard.min_balance",
            unit="EUR",
            description="The floor the balance must not be forecast to cross (MIN_BALANCE).",
        )
        self.balance = meter.create_gauge(
            "topup_guard.balance", unit="EUR", description="Account balance last read."
        )
        self.spend_rate = meter.create_gauge(
            "topup_guard.spend_rate",
            unit="EUR/s",
            description="Forecast spend rate over the short and long window.",
        )
        # Observable, not synchronous: the SDK refuses +Inf, and a sync gauge would keep showing
        # the last finite value after spend stopped. "No spend" is an absent sample instead.
        self._tte: float | None = None
        self.time_to_exhaustion = meter.create_observable_gauge(
            "topup_guard.time_to_exhaustion",
            callbacks=[self._observe_tte],
            unit="s",
            description="Forecast seconds until the balance reaches zero (absent: no spend).",
        )
        self.last_poll = meter.create_gauge(
            "topup_guard.last_poll_timestamp",
            unit="s",
            description="Unix time of the last successful balance read.",
        )
        self.last_topup = meter.create_gauge(
            "topup_guard.last_topup_timestamp",
            unit="s",
            description="Unix time of the last succeeded top-up.",
        )
        self.topups = meter.create_counter(
            "topup_guard.topups", unit="{topup}", description="Top-up attempts by outcome."
        )
        self.topped_up = meter.create_counter(
            "topup_guard.topped_up", unit="EUR", description="EUR credited by top-ups."
        )
        self.api_calls = meter.create_counter(
            "topup_guard.api_calls",
            unit="{call}",
            description="Vonage API calls by endpoint, HTTP status and outcome.",
        )
        self.api_call_duration = meter.create_histogram(
            "topup_guard.api_call_duration",
            unit="s",
            description="Duration of Vonage API calls.",
            explicit_bucket_boundaries_advisory=CALL_BUCKETS,
        )
        self.poll_delay = meter.create_histogram(
            "topup_guard.poll_delay",
            unit="s",
            description="How late each poll started against its schedule.",
            explicit_bucket_boundaries_advisory=POLL_DELAY_BUCKETS,
        )
        self.poll_failures = meter.create_counter(
            "topup_guard.poll_failures",
            unit="{poll}",
            description="Balance reads that failed, by error kind.",
        )
        self.notifications = meter.create_counter(
            "topup_guard.notifications",
            unit="{message}",
            description="Messages by channel (slack, webhook, pagerduty) and result.",
        )
        self.slack_messages = meter.create_counter(
            "topup_guard.slack_messages",
            unit="{message}",
            description="Slack messages by result (sent, dropped, failed).",
        )
        self.condition = meter.create_gauge(
            "topup_guard.condition",
            unit="1",
            description="1 while an alert condition is active, else 0.",
        )
        self._accounts: dict[str, float] = {}
        self._known: set[str] = set()  # every key a FleetCycle reported: the label values
        self._pending: list[TransferFinished] = []
        self.account_balance = meter.create_observable_gauge(
            "topup_guard.account_balance",
            callbacks=[self._observe_accounts],
            unit="EUR",
            description="Fleet mode: each account's spendable balance, from the list call.",
        )
        self.transfers = meter.create_counter(
            "topup_guard.transfers",
            unit="{transfer}",
            description="Fleet mode: balance transfers by subaccount and state.",
        )
        self.transferred = meter.create_counter(
            "topup_guard.transferred",
            unit="EUR",
            description="Fleet mode: EUR moved to each subaccount by applied transfers.",
        )
        self.fleet_list_calls = meter.create_counter(
            "topup_guard.fleet_list_calls",
            unit="{call}",
            description="Fleet mode: subaccount list calls (one per cycle).",
        )
        self._list_calls = 0
        self._conditions: set[str] = set()
        self._announced = True  # a ConditionsChanged came since the last PollCompleted
        self._preinitialise()

    def _preinitialise(self) -> None:
        """Every bounded label set at 0, so the first failure is an increase from 0."""
        self.build_info.set(1, {"version": build_version()})
        for outcome in Outcome:
            self.topups.add(0, {"outcome": outcome.value})
        self.topped_up.add(0)
        for kind in ERROR_KINDS:
            self.poll_failures.add(0, {"error_type": kind})
        for result in SLACK_RESULTS:
            self.slack_messages.add(0, {"result": result})
            for channel in ("slack", "webhook", "pagerduty"):
                self.notifications.add(0, {"channel": channel, "result": result})
        # An answered call's status is only known from the answer; a call with no answer is
        # known in advance: status "none", kind timeout or connection.
        for endpoint, method in GUARD_CALLS:
            for kind in ("timeout", "connection"):
                attrs = {"endpoint": endpoint, "method": method, "status": "none"}
                self.api_calls.add(0, {**attrs, "outcome": kind})
        for condition in Condition:
            self.condition.set(0, {"condition": condition.value})

    def _observe_accounts(self, options: CallbackOptions) -> Iterable[Observation]:
        return [Observation(eur, {"account": key}) for key, eur in self._accounts.items()]

    def _fleet_cycle(self, event: FleetCycle) -> None:
        for key in event.balances.keys() - self._known:
            # A new account: its counters start at 0, so its first transfer is an increase.
            for state in TRANSFER_STATES:
                self.transfers.add(0, {"account": key, "state": state})
            self.transferred.add(0, {"account": key})
            self._known.add(key)
        self._accounts = {key: float(eur) for key, eur in event.balances.items()}
        if event.list_calls > self._list_calls:
            self.fleet_list_calls.add(event.list_calls - self._list_calls)
            self._list_calls = event.list_calls
        held, self._pending = self._pending, []
        for transfer in held:
            self._transfer(transfer)

    def _transfer(self, event: TransferFinished) -> None:
        if event.account not in self._known:
            if len(self._pending) < _PENDING_MAX:
                self._pending.append(event)
            return
        self.transfers.add(1, {"account": event.account, "state": event.state})
        if event.state == "succeeded":
            self.transferred.add(float(event.amount), {"account": event.account})

    def _observe_tte(self, options: CallbackOptions) -> Iterable[Observation]:
        tte = self._tte
        return [Observation(tte)] if tte is not None and math.isfinite(tte) else []

    def api_call(
        self, endpoint: str, method: str, status: int | None, outcome: str, duration_s: float
    ) -> None:
        attrs = {
            "endpoint": endpoint,
            "method": method,
            "status": status_label(status),
            "outcome": call_outcome(outcome),
        }
        self.api_calls.add(1, attrs)
        self.api_call_duration.record(max(0.0, duration_s), {"endpoint": endpoint})

    def record_event(self, event: Event) -> None:
        if isinstance(event, Started):
            floor = _floor(event.policy)
            if floor is not None:
                self.min_balance.set(floor)
        elif isinstance(event, PollCompleted):
            # The engine emits a cycle's ConditionsChanged right after its PollCompleted, and only
            # while this replica announces account conditions (it may spend). A cycle without one
            # means another replica announces now: drop ours, or a condition active when this
            # replica lost the lease would stay 1 here, and page, long after it ended.
            if not self._announced:
                self._set_conditions(set())
            self._announced = False
            self.balance.set(float(event.balance.value))
            self.last_poll.set(event.wall)
            self.poll_delay.record(max(0.0, event.poll_delay_s))
            forecast = event.forecast
            if forecast is not None:
                self.spend_rate.set(forecast.rate_short, {"window": "short"})
                self.spend_rate.set(forecast.rate_long, {"window": "long"})
                self._tte = forecast.time_to_exhaustion
        elif isinstance(event, PollFailed):
            self.poll_failures.add(1, {"error_type": error_kind(event.error_type)})
        elif isinstance(event, TopUpFinished):
            self.topups.add(1, {"outcome": event.outcome.value})
            amount = _credited(event)
            if amount:
                self.topped_up.add(float(amount))
                if event.wall > 0:
                    self.last_topup.set(event.wall)
        elif isinstance(event, FleetCycle):
            self._fleet_cycle(event)
        elif isinstance(event, TransferFinished):
            self._transfer(event)
        elif isinstance(event, ConditionsChanged):
            self._announced = True
            self._set_conditions({c.value for c in event.active})

    def _set_conditions(self, active: set[str]) -> None:
        for name in active:
            self.condition.set(1, {"condition": name})
        for name in self._conditions - active:
            self.condition.set(0, {"condition": name})
        self._conditions = active


def _floor(policy: Mapping[str, str]) -> float | None:
    """TOPUP_GUARD_MIN_BALANCE from the start event's effective settings, if it is a number."""
    try:
        floor = Decimal(policy.get("TOPUP_GUARD_MIN_BALANCE", ""))
    except InvalidOperation:
        return None
    return float(floor) if floor.is_finite() else None


def _credited(event: TopUpFinished) -> Decimal | None:
    """EUR actually added: the credit seen in the balance, else what a confirmed top-up adds."""
    if event.outcome is not Outcome.SUCCEEDED:
        return None
    amount = event.credited if event.credited is not None else event.expected_amount
    return amount if amount is not None and amount > 0 else None
