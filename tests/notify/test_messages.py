"""Every message kind, rendered purely: content, Slack's Block Kit shape and limits, no secrets,
and the wording rules (no class names or HTTP codes, one rate unit, no "in 0 s")."""

from __future__ import annotations

import json
import math
import re
from decimal import Decimal
from typing import Any

import pytest
from slack_sdk.models.blocks import Block

from topup_guard.config import Settings
from topup_guard.events import Outcome, Started, Stopped, TopUpFinished
from topup_guard.notify import format as f
from topup_guard.notify.channels.slack import blocks, fallback
from topup_guard.notify.messages import (
    coordination_words,
    plain_detail,
    started,
    stopped,
    topup,
    topups_not_done,
)
from topup_guard.notify.note import Note, Scope

SCOPE = Scope("abcd1234", "Acme SMS", "production")
SECRETS: dict[str, Any] = {
    "api_secret": "Sup3rS3cretValue",
    "trx": "8ef2447e69604f642ae59363aa5f781b",
    "slack_webhook_url": "https://hooks.slack.com/services/T0SECRET/B0SECRET/hookSecretXYZ",
    "slack_token": "xoxb-111-222-tokenSecretABC",
    "redis_url": "redis://:redisPassw0rd@redis:6379/0",
    "webhook_url": "https://ops.example.com/hook?token=webhookTok3n",
    "webhook_secret": "hmacKeySecret99",
    "pagerduty_routing_key": "R0PAGERDUTYROUTINGKEYSECRET00001",
}


def assert_valid_slack_message(note: Note) -> None:
    """Block Kit shape and Slack's documented limits, checked by hand and by slack-sdk's models."""
    text, message_blocks = fallback(note), blocks(note)
    assert text.strip(), "the fallback text must not be empty"
    assert len(text) <= f.FALLBACK_MAX
    assert 1 <= len(message_blocks) <= 50
    for block in message_blocks:
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
    json.dumps(message_blocks)  # what slack-sdk will send


def everything(note: Note) -> str:
    return fallback(note) + json.dumps(blocks(note), ensure_ascii=False)


def assert_wording_rules(note: Note) -> None:
    shown = everything(note)
    assert not re.search(r"\bHTTP \d{3}\b", shown), shown
    assert not re.search(r"\b[A-Z][a-z]+(?:[A-Z][a-z]+)*Error\b", shown), shown
    assert "SoleGuard" not in shown
    assert "EUR/s" not in shown
    assert "in 0 s" not in shown


def finished(outcome: Outcome, **changes: Any) -> TopUpFinished:
    values: dict[str, Any] = {
        "attempt_id": 7,
        "outcome": outcome,
        "balance_before": Decimal("8.4567"),
        "expected_amount": Decimal("50"),
        "credited": Decimal("50") if outcome is Outcome.SUCCEEDED else None,
        "balance_after": Decimal("58.4567") if outcome is Outcome.SUCCEEDED else None,
        "reason": "exhaustion forecast in 250 s < next poll + latency + margin at 0.0125 EUR/s",
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
    note = topup(finished(Outcome.SUCCEEDED), SCOPE)
    assert_valid_slack_message(note)
    assert_wording_rules(note)
    assert note.kind == "topup_succeeded"
    for expected in (
        "Topped up 50.00 EUR",
        "8.46 EUR -> 58.46 EUR",
        "0.75 EUR/min",
        "in 4 min 10 s",
    ):
        assert expected in note.text
    assert "exhaustion forecast in 250 s &lt; next poll" in fallback(note)  # mrkdwn-escaped
    assert "attempt #7" in everything(note)


def test_every_message_names_the_account_and_the_environment() -> None:
    notes = [
        topup(finished(Outcome.SUCCEEDED), SCOPE),
        topup(finished(Outcome.FAILED), SCOPE),
        topup(finished(Outcome.DRY_RUN), SCOPE),
        started(Started(policy={}, dry_run=False, coordination="SoleGuard"), SCOPE),
        stopped(Stopped(reason="SIGTERM"), SCOPE),
    ]
    for note in notes:
        assert note.text.startswith("[production · Acme SMS (abcd1234)] ")
        assert "environment *production* · account *Acme SMS* (`abcd1234`)" in everything(note)
    bare = topup(finished(Outcome.SUCCEEDED), Scope("abcd1234"))
    assert bare.text.startswith("[abcd1234] Topped up")


def test_a_topup_whose_credit_has_not_shown_says_it_is_on_its_way() -> None:
    # Vonage confirmed at 14.77; the balance read right after still showed 14.71.
    early = finished(
        Outcome.SUCCEEDED,
        balance_before=Decimal("14.77"),
        credited=None,
        balance_after=Decimal("14.71"),
    )
    note = topup(early, SCOPE)
    assert_valid_slack_message(note)
    assert "Topped up 50.00 EUR" in note.text
    assert "credit on its way" in note.text
    assert "14.71 EUR" not in note.text.split("credit on its way")[0]
    assert "-> 14.71" not in everything(note)
    assert ("Balance after", "credit on its way (14.71 EUR now)") in note.fields


def test_a_topup_whose_credit_shows_gives_the_balance_after_despite_spend_meanwhile() -> None:
    note = topup(
        finished(
            Outcome.SUCCEEDED,
            balance_before=Decimal("14.77"),
            credited=Decimal("50"),
            balance_after=Decimal("64.70"),
        ),
        SCOPE,
    )
    assert "14.77 EUR -> 64.70 EUR" in note.text


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
        detail="answer was ambiguous (POST /account/top-up: bad gateway (HTTP 502)) and no "
        "credit showed within 60 s",
        action_needed="Check the payment history in the Vonage dashboard for a charge at 08:00.",
        evidence=None,
        requests=2,
    )
    note = topup(event, SCOPE)
    assert_valid_slack_message(note)
    assert_wording_rules(note)
    assert note.kind == kind
    assert note.summary.startswith(title)
    assert "bad gateway (Vonage server error)" in note.text
    assert "What to do now: Check the payment history" in note.text
    assert "8.46 EUR" in note.text
    assert "requests sent: 2" in everything(note)


@pytest.mark.parametrize(
    ("detail", "meaning"),
    [
        (
            "AutoReloadDisabledError: POST /account/top-up: not auto-reload enabled (HTTP 401)",
            "auto-reload is not enabled on the account",
        ),
        (
            "TopUpRefusedError: POST /account/top-up: topup failed",
            "charging the stored card or PayPal account failed",
        ),
        (
            "AuthenticationError: POST /account/top-up: authentication failed (HTTP 401)",
            "did not accept the guard's API key and secret",
        ),
        (
            "rate limited by Vonage on every try: RateLimitedError: POST /account/top-up: "
            "too many requests (HTTP 429)",
            "slow down",
        ),
        ("RequestNotSentError: POST /account/top-up: connect failed", "never reached Vonage"),
        ("SomeNewError: POST /account/top-up: odd (HTTP 418)", "did not accept the top-up (Vonage"),
    ],
)
def test_a_refused_payment_is_said_in_words_not_as_a_status_code(detail: str, meaning: str) -> None:
    note = topup(finished(Outcome.FAILED, detail=detail), SCOPE)
    assert_wording_rules(note)
    assert meaning in plain_detail(detail)
    assert meaning in note.text
    assert "POST /account/top-up" not in everything(note)


def test_failed_topup_without_action_says_nothing_is_needed() -> None:
    note = topup(finished(Outcome.FAILED, detail="Refused.", action_needed=None), SCOPE)
    assert "guard will retry by itself" in note.text


def test_failed_topups_together_are_one_message_with_each_attempt() -> None:
    refused = "TopUpRefusedError: POST /account/top-up: topup failed"
    events = [finished(Outcome.FAILED, attempt_id=i, detail=refused) for i in (1, 2, 3)]
    note = topups_not_done(events, SCOPE)
    assert_valid_slack_message(note)
    assert note.summary.startswith("3 top-ups failed")
    assert "Attempts #1, #2, #3: Vonage refused the payment" in note.text


def test_dry_run_decision_is_marked_as_such() -> None:
    note = topup(finished(Outcome.DRY_RUN, detail="dry run"), SCOPE, suppressed=3)
    assert_valid_slack_message(note)
    assert note.kind == "topup_dry_run"
    assert note.summary.startswith("DRY RUN — would have topped up 50.00 EUR")
    assert blocks(note)[0]["text"]["text"].endswith("DRY RUN — would have topped up 50.00 EUR")
    assert "No top-up was made" in note.text
    assert "3 more dry-run decisions" in note.text


def test_dry_run_without_known_amount_says_once() -> None:
    note = topup(finished(Outcome.DRY_RUN, expected_amount=None), SCOPE)
    assert "would have topped up once" in note.text


def test_topup_with_no_spend_does_not_claim_an_exhaustion_time() -> None:
    note = topup(finished(Outcome.SUCCEEDED, rate=0.0, time_to_exhaustion=math.inf), SCOPE)
    assert "not forecast (no spend)" in note.text
    assert "0.00 EUR/min" in note.text


def test_an_exhaustion_under_a_second_away_is_now() -> None:
    note = topup(finished(Outcome.DRY_RUN, time_to_exhaustion=0.4), SCOPE)
    assert "exhaustion now" in note.text
    assert_wording_rules(note)


def test_untrusted_text_is_escaped_and_cut_to_slack_limits() -> None:
    note = topup(finished(Outcome.FAILED, detail="<!channel> & " + "x" * 5000), SCOPE)
    assert_valid_slack_message(note)
    assert "<!channel>" not in everything(note)
    assert "&lt;!channel&gt; &amp;" in fallback(note)


def settings_with_secrets(**changes: Any) -> Settings:
    return Settings(api_key="abcd1234", slack_channel="#sms-ops", **SECRETS, **changes)


@pytest.mark.parametrize(
    ("reported", "shown"),
    [
        ("SoleGuard", "single replica (SQLite ledger)"),
        ("RedisLease", "shared lease (Redis)"),
        ("shared lease (Redis)", "shared lease (Redis)"),
        ("SomeFutureCoordinator", "single replica"),
    ],
)
def test_coordination_is_shown_in_words_never_as_a_class_name(reported: str, shown: str) -> None:
    assert coordination_words(reported) == shown
    note = started(Started(policy={}, dry_run=False, coordination=reported), SCOPE)
    assert f"coordination {shown}" in note.text
    assert_wording_rules(note)


def test_started_shows_the_effective_policy() -> None:
    settings = settings_with_secrets(
        min_balance=Decimal("12.5"), max_topups_per_hour=3, max_daily_amount=Decimal("400")
    )
    note = started(
        Started(policy=settings.masked(), dry_run=False, coordination="RedisLease"), SCOPE
    )
    assert_valid_slack_message(note)
    for expected in ("floor 12.50 EUR", "3/hour", "24/day", "400.00 EUR/day", "shared lease"):
        assert expected in note.text
    assert "dry run no" in note.text
    assert "TOPUP_GUARD_POLL_INTERVAL=60.0" in everything(note)


def test_started_in_dry_run_is_marked() -> None:
    settings = settings_with_secrets(dry_run=True)
    note = started(Started(policy=settings.masked(), dry_run=True, coordination="SoleGuard"), SCOPE)
    assert "(DRY RUN)" in blocks(note)[0]["text"]["text"]
    assert "YES — no top-up will be made" in everything(note)


def test_started_never_shows_a_secret_value() -> None:
    settings = settings_with_secrets()
    note = started(
        Started(policy=settings.masked(), dry_run=False, coordination="SoleGuard"), SCOPE
    )
    shown = everything(note)
    for value in (*SECRETS.values(), "redisPassw0rd", "hookSecretXYZ", "tokenSecretABC"):
        assert value not in shown
    assert "VONAGE_API_SECRET=****** (set)" in shown
    assert "TOPUP_GUARD_PAGERDUTY_ROUTING_KEY=****** (set)" in shown


def test_started_masks_secret_keys_even_when_the_caller_did_not() -> None:
    raw = {
        "VONAGE_API_SECRET": "Sup3rS3cretValue",
        "TOPUP_GUARD_TRX": "8ef2447e69604f642ae59363aa5f781b",
        "TOPUP_GUARD_SLACK_TOKEN": "xoxb-111-222-tokenSecretABC",
        "TOPUP_GUARD_SLACK_WEBHOOK_URL": "https://hooks.slack.com/services/T/B/hookSecretXYZ",
        "TOPUP_GUARD_REDIS_URL": "redis://:redisPassw0rd@redis:6379/0",
        "TOPUP_GUARD_WEBHOOK_SECRET": "hmacKeySecret99",
        "TOPUP_GUARD_PAGERDUTY_ROUTING_KEY": "R0PAGERDUTYROUTINGKEYSECRET00001",
        "TOPUP_GUARD_MIN_BALANCE": "10",
    }
    note = started(Started(policy=raw, dry_run=False, coordination="SoleGuard"), SCOPE)
    shown = everything(note)
    for value in raw.values():
        if value != "10":
            assert value not in shown
    assert "hookSecretXYZ" not in shown
    assert "redisPassw0rd" not in shown
    assert "floor 10.00 EUR" in note.text


def test_stopped_gives_the_reason() -> None:
    note = stopped(Stopped(reason="SIGTERM"), SCOPE)
    assert_valid_slack_message(note)
    assert "stopped: SIGTERM" in note.text


def test_decision_reasons_in_eur_per_second_are_shown_per_minute() -> None:
    assert f.per_minute_text("at 0.05 EUR/s (burst 0.0502 EUR/s)") == (
        "at 3.00 EUR/min (burst 3.01 EUR/min)"
    )


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
    [
        (250, "in 4 min 10 s"),
        (0, "now"),
        (0.4, "now"),
        (-5, "now"),
        (math.inf, "not forecast (no spend)"),
    ],
)
def test_exhaustion_is_relative(seconds: float, text: str) -> None:
    assert f.exhaustion(seconds) == text
