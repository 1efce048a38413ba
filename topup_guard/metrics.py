"""The guard's metric instruments and how engine events feed them.

Names and units are a public interface (dashboards and alerts depend on them): change them only
with a changelog entry. Money is ``Decimal`` everywhere else; a metric sample is an observation
for graphs, so it is converted to float here and only here. The time to exhaustion is absent while
no spend is seen (the SDK cannot carry +Inf).

| instrument                         | kind      | unit    | attributes                       |
|------------------------------------|-----------|---------|----------------------------------|
| topup_guard.balance                | gauge     | EUR     |                                  |
| topup_guard.spend_rate             | gauge     | EUR/s   | window = short / long            |
| topup_guard.time_to_exhaustion     | gauge     | s       |                                  |
| topup_guard.topups                 | counter   | {topup} | outcome                          |
| topup_guard.topped_up              | counter   | EUR     |                                  |
| topup_guard.api_calls              | counter   | {call}  | endpoint, method, status, outcome|
| topup_guard.api_call_duration      | histogram | s       | endpoint                         |
| topup_guard.poll_delay             | histogram | s       |                                  |
| topup_guard.poll_failures          | counter   | {poll}  | error_type                       |
| topup_guard.notifications          | counter   | {message} | channel, result (sent/dropped/…) |
| topup_guard.slack_messages         | counter   | {message} | result (Slack only: old name) |
| topup_guard.condition              | gauge     | 1       | condition (1 active, 0 ended)    |
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from decimal import Decimal

from opentelemetry.metrics import CallbackOptions, Meter, Observation

from topup_guard.events import (
    ConditionsChanged,
    Event,
    Outcome,
    PollCompleted,
    PollFailed,
    TopUpFinished,
)

POLL_DELAY_BUCKETS = (0.1, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
CALL_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0)


class Instruments:
    """Every instrument, created once per ``Telemetry`` on its meter."""

    def __init__(self, meter: Meter) -> None:
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
            description="Balance reads that failed, by error type.",
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
            description="1 while an alert condition is active, 0 once it ended.",
        )
        self._conditions: set[str] = set()

    def _observe_tte(self, options: CallbackOptions) -> Iterable[Observation]:
        tte = self._tte
        return [Observation(tte)] if tte is not None and math.isfinite(tte) else []

    def api_call(
        self, endpoint: str, method: str, status: int | None, outcome: str, duration_s: float
    ) -> None:
        attrs = {
            "endpoint": endpoint,
            "method": method,
            "status": str(status) if status is not None else "none",
            "outcome": outcome,
        }
        self.api_calls.add(1, attrs)
        self.api_call_duration.record(max(0.0, duration_s), {"endpoint": endpoint})

    def record_event(self, event: Event) -> None:
        if isinstance(event, PollCompleted):
            self.balance.set(float(event.balance.value))
            self.poll_delay.record(max(0.0, event.poll_delay_s))
            forecast = event.forecast
            if forecast is not None:
                self.spend_rate.set(forecast.rate_short, {"window": "short"})
                self.spend_rate.set(forecast.rate_long, {"window": "long"})
                self._tte = forecast.time_to_exhaustion
        elif isinstance(event, PollFailed):
            self.poll_failures.add(1, {"error_type": event.error_type})
        elif isinstance(event, TopUpFinished):
            self.topups.add(1, {"outcome": event.outcome.value})
            amount = _credited(event)
            if amount:
                self.topped_up.add(float(amount))
        elif isinstance(event, ConditionsChanged):
            active = {c.value for c in event.active}
            for name in active:
                self.condition.set(1, {"condition": name})
            for name in self._conditions - active:
                self.condition.set(0, {"condition": name})
            self._conditions = active


def _credited(event: TopUpFinished) -> Decimal | None:
    """EUR actually added: the credit seen in the balance, else what a confirmed top-up adds."""
    if event.outcome is not Outcome.SUCCEEDED:
        return None
    amount = event.credited if event.credited is not None else event.expected_amount
    return amount if amount is not None and amount > 0 else None
