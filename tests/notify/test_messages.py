"""Every Slack message kind, rendered purely: content, Block Kit shape, limits, and no secrets."""

from __future__ import annotations

import json
import math
from decimal import Decimal
from typing import Any

import pytest
from slack_sdk.models.blocks import Block

from topup_guard.config import Settings
from topup_guard.events import (
    Condition,
    ConditionsChanged,
    Outcome,
    PollFailed,
    Started,
    Stopped,
    TopUpFinished,
)
from topup_guard.notify import format as f
from topup_guard.notify.conditions_text import CONDITION_TEXT
from topup_guard.notify.messages import (
    SlackMessage,
    condition_recovered,
    condition_repeated,
    condition_started,
    render,
    topup,
)

SECRETS: dict[str, Any] = {
    "api_secret": "Sup3rS3cretValue",
    "trx": "8ef2447e69604f642ae59363aa5f781b",
    "slack_webhook_url": "https://hooks.slack.com/services/T0SECRET/B0SECRET/hookSecretXYZ",
    "slack_token": "xoxb-111-222-tokenSecretABC",
    "redis_url": "redis://:redisPassw0rd@redis:6379/0",
}


def assert_valid_slack_message(message: SlackMessage) -> None:
    """Block Kit shape and Slack's documented limits, checked by hand and by slack-sdk's models."""
    assert message.text.strip(), "the fallback text must not be empty"
    assert len(message.text) <= f.FALLBACK_MAX
    assert 1 <= len(message.blocks) <= 50
    for block in message.blocks:
        assert block["type"] in {"header", "section", "context"}
        if block["type"] == "header":
            assert block["text"]["type"] == "plain_text"
            assert 0 < len(block["text"]["text"]) <= 150
        elif block["type"] == "section":
            assert block["text"]["type"] == "mrkdwn"
            assert 0 < len(block["text"]["text"]) <= 3000
            fields = block.get("fields", [])
            assert len(fields) <= 10
            assert all(0 < len(fd["text"]) <= 2000 for fd in fields)
        else:
            assert 1 <= len(block["elements"]) <= 10
            assert all(0 < len(el["text"]) <= 3000 for el in block["elements"])
        parsed = Block.parse(block)
        assert parsed is not None
        parsed.validate_json()  # raises SlackObjectFormationError past a limit
    json.dumps(message.blocks)  # what slack-sdk will send


def everything(message: SlackMessage) -> str:
    return message.text + json.dumps(message.blocks, ensure_ascii=False)


def finished(outcome: Outcome, **changes: Any) -> TopUpFinished:
    values: dict[str, Any] = {
        "attempt_id": 7,
        "outcome": outcome,
        "balance_before": Decimal("8.4567"),
        "expected_amount": Decimal("50"),
        "credited": Decimal("50") if outcome is Outcome.SUCCEEDED else None,
        "balance_after": Decimal("58.4567") if outcome is Outcome.SUCCEEDED else None,
        "reason": "exhaustion forecast in 250 s < next poll + latency + margin",
        "rate": 0.0125,  # EUR/s -> 0.75 EUR/min
        "time_to_exhaustion": 250.0,
        "detail": "Vonage confirmed the top-up and the balance rose by 50.00 EUR.",
        "action_needed": None,
        "requests": 1,
        "evidence": "api",
        "wall": 1_800_000_000.0,
    }
    values.update(changes)
    return TopUpFinished(**values)


def test_successful_topup_shows_amount_balances_rate_forecast_and_reason() -> None:
    message = topup(finished(Outcome.SUCCEEDED))
    assert_valid_slack_message(message)
    assert message.kind == "topup_succeeded"
    for expected in (
        "Topped up 50.00 EUR",
        "8.46 EUR",
        "58.46 EUR",
        "0.75 EUR/min",
        "in 4 min 10 s",
    ):
        assert expected in message.text
    assert "exhaustion forecast in 250 s &lt; next poll" in message.text  # mrkdwn-escaped
    assert "attempt #7" in everything(message)


@pytest.mark.parametrize(
    ("outcome", "title", "kind"),
    [
        (Outcome.FAILED, "Top-up failed", "topup_failed"),
        (Outcome.UNCONFIRMED, "Top-up unconfirmed", "topup_unconfirmed"),
    ],
)
def test_failed_or_unconfirmed_topup_says_what_happened_and_what_to_do(
    outcome: Outcome, title: str, kind: str
) -> None:
    event = finished(
        outcome,
        detail="Vonage answered 500 and no credit step appeared within 60 s.",
        action_needed="Check the payment history in the Vonage dashboard for a charge at 08:00.",
        evidence=None,
        requests=2,
    )
    message = topup(event)
    assert_valid_slack_message(message)
    assert message.kind == kind
    assert message.text.startswith(title)
    assert "no credit step appeared" in message.text
    assert "What to do now: Check the payment history" in message.text
    assert "8.46 EUR" in message.text
    assert "requests sent: 2" in everything(message)


def test_failed_topup_without_action_says_nothing_is_needed() -> None:
    message = topup(finished(Outcome.FAILED, detail="Refused.", action_needed=None))
    assert "guard will retry by itself" in message.text


def test_dry_run_decision_is_marked_as_such() -> None:
    message = topup(finished(Outcome.DRY_RUN, detail="dry run"), suppressed=3)
    assert_valid_slack_message(message)
    assert message.kind == "topup_dry_run"
    assert message.text.startswith("DRY RUN — would have topped up 50.00 EUR")
    assert message.blocks[0]["text"]["text"].endswith("DRY RUN — would have topped up 50.00 EUR")
    assert "No top-up was made" in message.text
    assert "3 more dry-run decisions" in message.text


def test_dry_run_without_known_amount_says_once() -> None:
    message = topup(finished(Outcome.DRY_RUN, expected_amount=None))
    assert "would have topped up once" in message.text


def test_topup_with_no_spend_does_not_claim_an_exhaustion_time() -> None:
    message = topup(finished(Outcome.SUCCEEDED, rate=0.0, time_to_exhaustion=math.inf))
    assert "not forecast (no spend)" in message.text
    assert "0.00 EUR/min" in message.text


def test_untrusted_text_is_escaped_and_cut_to_slack_limits() -> None:
    message = topup(finished(Outcome.FAILED, detail="<!channel> & " + "x" * 5000))
    assert_valid_slack_message(message)
    assert "<!channel>" not in everything(message)
    assert "&lt;!channel&gt; &amp;" in message.text


@pytest.mark.parametrize("condition", list(Condition))
def test_every_condition_has_start_repeat_and_recovered_messages(condition: Condition) -> None:
    info = CONDITION_TEXT[condition]
    start = condition_started(condition, "balance 8.40 EUR", wall=1_800_000_000.0)
    again = condition_repeated(condition, "balance 7.10 EUR", lasted=3725, wall=1_800_003_725.0)
    over = condition_recovered(condition, lasted=600)
    for message in (start, again, over):
        assert_valid_slack_message(message)
        assert info.title in message.text
    assert "balance 8.40 EUR" in start.text
    assert info.action in start.text
    assert start.text.startswith(info.title)
    assert again.text.startswith("Still:")
    assert "1 h 2 min" in again.text
    assert over.text.startswith("Recovered:")
    assert "10 min" in over.text
    assert len({start.kind, again.kind, over.kind}) == 3


def test_autoreload_disabled_tells_how_to_fix_it() -> None:
    message = condition_started(Condition.AUTORELOAD_DISABLED, "Vonage reports autoReload false.")
    assert "manual payment with auto-reload switched on" in message.text
    assert "TOPUP_GUARD_TRX" in message.text


def test_cap_and_breaker_messages_name_their_settings() -> None:
    cap = condition_started(Condition.CAP_REACHED, "4 top-ups in the last hour (cap 4).")
    breaker = condition_started(Condition.BREAKER_OPEN, "3 failed top-ups in a row.")
    assert "TOPUP_GUARD_MAX_TOPUPS_PER_HOUR" in cap.text
    assert "4 top-ups" in cap.text
    assert "TOPUP_GUARD_BREAKER_COOLDOWN" in breaker.text


def settings_with_secrets(**changes: Any) -> Settings:
    return Settings(api_key="abcd1234", slack_channel="#sms-ops", **SECRETS, **changes)


def test_started_shows_the_effective_policy() -> None:
    settings = settings_with_secrets(
        min_balance=Decimal("12.5"), max_topups_per_hour=3, max_daily_amount=Decimal("400")
    )
    message = render(Started(policy=settings.masked(), dry_run=False, coordination="redis (lease)"))
    assert message is not None
    assert_valid_slack_message(message)
    for expected in ("floor 12.50 EUR", "3/hour", "24/day", "400.00 EUR/day", "redis (lease)"):
        assert expected in message.text
    assert "dry run no" in message.text
    assert "TOPUP_GUARD_POLL_INTERVAL=60.0" in everything(message)


def test_started_in_dry_run_is_marked() -> None:
    settings = settings_with_secrets(dry_run=True)
    message = render(Started(policy=settings.masked(), dry_run=True, coordination="sqlite"))
    assert message is not None
    assert "(DRY RUN)" in message.blocks[0]["text"]["text"]
    assert "YES — no top-up will be made" in everything(message)


def test_started_never_shows_a_secret_value() -> None:
    settings = settings_with_secrets()
    message = render(Started(policy=settings.masked(), dry_run=False, coordination="sqlite"))
    assert message is not None
    shown = everything(message)
    for value in (*SECRETS.values(), "redisPassw0rd", "hookSecretXYZ", "tokenSecretABC"):
        assert value not in shown
    assert "VONAGE_API_SECRET=****** (set)" in shown


def test_started_masks_secret_keys_even_when_the_caller_did_not() -> None:
    raw = {
        "VONAGE_API_SECRET": "Sup3rS3cretValue",
        "TOPUP_GUARD_TRX": "8ef2447e69604f642ae59363aa5f781b",
        "TOPUP_GUARD_SLACK_TOKEN": "xoxb-111-222-tokenSecretABC",
        "TOPUP_GUARD_SLACK_WEBHOOK_URL": "https://hooks.slack.com/services/T/B/hookSecretXYZ",
        "TOPUP_GUARD_REDIS_URL": "redis://:redisPassw0rd@redis:6379/0",
        "TOPUP_GUARD_MIN_BALANCE": "10",
    }
    message = render(Started(policy=raw, dry_run=False, coordination="sqlite"))
    assert message is not None
    shown = everything(message)
    for value in ("Sup3rS3cretValue", "8ef2447e69604f642ae59363aa5f781b", "tokenSecretABC"):
        assert value not in shown
    assert "hookSecretXYZ" not in shown
    assert "redisPassw0rd" not in shown
    assert "floor 10.00 EUR" in message.text


def test_stopped_gives_the_reason() -> None:
    message = render(Stopped(reason="SIGTERM"))
    assert message is not None
    assert_valid_slack_message(message)
    assert "stopped: SIGTERM" in message.text


def test_polls_and_condition_snapshots_are_not_rendered_one_by_one() -> None:
    assert render(PollFailed(wall=1.0, error_type="TransportError", message="timeout")) is None
    assert render(ConditionsChanged(wall=1.0, active={Condition.LOW_BALANCE: "x"})) is None


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0 s"),
        (45.4, "45 s"),
        (250, "4 min 10 s"),
        (600, "10 min"),
        (3725, "1 h 2 min"),
        (90_000, "1 d 1 h"),
        (math.inf, "never"),
    ],
)
def test_durations_read_like_a_person_would_say_them(seconds: float, text: str) -> None:
    assert f.duration(seconds) == text


@pytest.mark.parametrize(
    ("amount", "text"),
    [
        (Decimal("12.345"), "12.35 EUR"),
        (Decimal("0.004"), "0.00 EUR"),
        (Decimal("-1.5"), "-1.50 EUR"),
        (Decimal("1234.5"), "1,234.50 EUR"),
        (None, "unknown"),
    ],
)
def test_money_has_two_decimals(amount: Decimal | None, text: str) -> None:
    assert f.eur(amount) == text


@pytest.mark.parametrize(
    ("per_second", "text"),
    [
        (0.0125, "0.75 EUR/min"),
        (0.0, "0.00 EUR/min"),
        (0.00001, "< 0.01 EUR/min"),
        (math.nan, "unknown"),
    ],
)
def test_rates_are_per_minute(per_second: float, text: str) -> None:
    assert f.rate(per_second) == text


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(250, "in 4 min 10 s"), (0, "now"), (-5, "now"), (math.inf, "not forecast (no spend)")],
)
def test_exhaustion_is_relative(seconds: float, text: str) -> None:
    assert f.exhaustion(seconds) == text
