"""Builders for the events and status the telemetry, health and log tests feed in."""

from __future__ import annotations

import math
from collections.abc import Iterator
from decimal import Decimal

import pytest

from topup_guard import redact
from topup_guard.events import Outcome, PollCompleted, TopUpFinished
from topup_guard.model import Balance
from topup_guard.policy.decide import Action, Decision
from topup_guard.policy.forecast import Forecast


def make_forecast(rate: float = 0.01, tte: float = 1200.0) -> Forecast:
    return Forecast(
        t=100.0,
        balance=Decimal("12.3456"),
        rate_short=rate,
        rate_long=rate / 2,
        rate=rate,
        peak_rate=rate * 3,
        time_to_exhaustion=tte,
        confidence=0.8,
        samples=12,
        spend_total=Decimal("3.5"),
        credits_total=Decimal("0"),
    )


def make_decision(action: Action = Action.NOTHING, reason: str = "balance healthy") -> Decision:
    return Decision(
        action=action,
        count=1 if action is Action.TOP_UP else 0,
        wanted=1 if action is Action.TOP_UP else 0,
        reason=reason,
        next_poll_in=30.0,
        blocked_by=None,
        exhaustion_within_horizon=action is Action.TOP_UP,
        projected_balance=Decimal("1.25"),
    )


def make_poll(balance: str = "12.3456", forecast: Forecast | None = None) -> PollCompleted:
    return PollCompleted(
        wall=1_800_000_000.0,
        balance=Balance(Decimal(balance), auto_reload=True),
        forecast=forecast if forecast is not None else make_forecast(),
        decision=make_decision(),
        duration_s=0.12,
        poll_delay_s=0.7,
        account="abcd1234",
    )


def make_topup(
    outcome: Outcome = Outcome.SUCCEEDED, credited: str | None = "10.00"
) -> TopUpFinished:
    return TopUpFinished(
        attempt_id=7,
        outcome=outcome,
        balance_before=Decimal("2.50"),
        expected_amount=Decimal("10.00"),
        credited=Decimal(credited) if credited is not None else None,
        balance_after=Decimal("12.50") if credited is not None else None,
        reason="exhaustion forecast in 900 s",
        rate=0.01,
        time_to_exhaustion=math.inf,
        detail="balance stepped up by 10.00",
        action_needed=None,
        requests=1,
        evidence="api",
        wall=1_800_000_000.0,
    )


@pytest.fixture(autouse=True)
def _forget_secrets() -> Iterator[None]:
    """Registered secrets are process-wide; each test starts and ends with none."""
    redact.clear_secrets()
    yield
    redact.clear_secrets()
