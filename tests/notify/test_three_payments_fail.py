"""The issue's scenario end to end: three payments fail, Vonage turns auto-reload off.

The engine runs on the simulated account (virtual time) and its events go, as in ``run``, to
a dispatcher with all three channels over real sockets: the local Slack receiver, a webhook
receiver that verifies the HMAC, and a fake PagerDuty. One cause must make one message each.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from decimal import Decimal
from pathlib import Path

import pytest

from tests.run.slack_receiver import SlackReceiver
from topup_guard import retry
from topup_guard.backtest import InProcessAccount, SampledClock
from topup_guard.config import DEMO_API_KEY, DEMO_API_SECRET, DEMO_TRX, load_settings
from topup_guard.engine import Engine
from topup_guard.events import Condition, Fanout, Outcome, Recorder, TopUpFinished
from topup_guard.ledger.sqlite import SqliteLedger
from topup_guard.notify.build import build_dispatcher
from topup_guard.sim.account import SimAccount
from topup_guard.sim.scenario import Scenario
from topup_guard.sim.spend import Phase, SpendProfile

from .receivers import FakePagerDuty, WebhookReceiver

HMAC_KEY = "whsec-scenario-key"
ROUTING_KEY = "R0SCENARIOROUTINGKEY0123456789AB"


@pytest.fixture(autouse=True)
def _no_backoff(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy"):
        monkeypatch.delenv(name, raising=False)
    retry.set_testing(True)
    yield
    retry.set_testing(False)


@pytest.fixture
async def receivers() -> AsyncIterator[tuple[SlackReceiver, WebhookReceiver, FakePagerDuty]]:
    slack, hook, pd = SlackReceiver(), WebhookReceiver(HMAC_KEY), FakePagerDuty(ROUTING_KEY)
    for server in (slack, hook, pd):
        await server.start()
    yield slack, hook, pd
    for server in (slack, hook, pd):
        await server.stop()


def failing_account() -> SimAccount:
    acct = SimAccount(
        api_key=DEMO_API_KEY,
        api_secret=DEMO_API_SECRET,
        trx=DEMO_TRX,
        balance=Decimal("20"),
        topup_amount=Decimal("50"),
        autoreload_threshold=Decimal("0"),  # Vonage's own reload must not rescue the account
        spend=SpendProfile((Phase(0, 1e9, Decimal("0.05")),)),
        message_price=Decimal("0.01"),
    )
    acct.fail_payments = 3  # the stored card is declined; the third failure disables auto-reload
    return acct


async def test_three_failed_payments_make_one_grouped_message_naming_the_account(
    tmp_path: Path, receivers: tuple[SlackReceiver, WebhookReceiver, FakePagerDuty]
) -> None:
    slack, hook, pd = receivers
    settings = load_settings(
        {
            "VONAGE_API_KEY": DEMO_API_KEY,
            "VONAGE_API_SECRET": DEMO_API_SECRET,
            "TOPUP_GUARD_TRX": DEMO_TRX,
            "TOPUP_GUARD_STATE_PATH": str(tmp_path / "ledger.db"),
            "TOPUP_GUARD_ACCOUNT_NAME": "Acme SMS",
            "TOPUP_GUARD_ENVIRONMENT": "production",
            "TOPUP_GUARD_SLACK_WEBHOOK_URL": slack.webhook_url,
            "TOPUP_GUARD_WEBHOOK_URL": hook.url,
            "TOPUP_GUARD_WEBHOOK_SECRET": HMAC_KEY,
            "TOPUP_GUARD_PAGERDUTY_ROUTING_KEY": ROUTING_KEY,
            "TOPUP_GUARD_PAGERDUTY_URL": pd.url,
        }
    )
    acct = failing_account()
    clock = SampledClock(acct)
    api = InProcessAccount(acct, clock, Scenario.from_dict(
        {"initial_balance": 1, "topup_amount": 50, "autoreload_threshold": 0,
         "topup_latency_s": 1, "balance_latency_s": 0.2}))  # fmt: skip
    notifier = build_dispatcher(settings, clock=clock)
    events = Recorder()
    engine = Engine(
        api=api,
        ledger=SqliteLedger(settings.state_path, account=DEMO_API_KEY),
        clock=clock,
        settings=settings,
        sink=Fanout([events, notifier]),
    )
    await notifier.start()
    await engine.run(asyncio.Event(), until=clock.now() + 1200)  # 20 min, within the cooldown
    await notifier.stop(timeout=10)

    # What the engine said: three refused top-ups, then the four conditions of one cause.
    failures = [e for e in events.events if isinstance(e, TopUpFinished)]
    assert [e.outcome for e in failures] == [Outcome.FAILED] * 3
    assert engine.status.active_conditions.keys() >= {
        c.value for c in (Condition.AUTORELOAD_DISABLED, Condition.BREAKER_OPEN)
    }

    headers = [p.json["blocks"][0]["text"]["text"] for p in slack.posts]
    assert headers == [
        "▶️ topup-guard started",
        "⛔ Auto-reload is disabled: the guard cannot top up",
        "⏹️ topup-guard stopped",
    ]
    alert = slack.posts[1].text
    assert alert.startswith(f"[production · Acme SMS ({DEMO_API_KEY})] Auto-reload is disabled")
    assert "circuit breaker open" in alert
    assert "After 3 failed top-ups" in alert
    body = " ".join(b["text"]["text"] for b in slack.posts[1].json["blocks"] if "text" in b)
    assert "Attempts #1, #2, #3: Vonage refused the payment" in body
    assert "HTTP 401" not in body
    assert "TopUpRefusedError" not in body

    incidents = [b for b in hook.accepted if b["incident"] is not None]
    assert [b["incident"]["key"] for b in incidents] == ["autoreload_disabled"]
    assert len(hook.accepted) == len(slack.posts)  # the same notes on every channel
    assert [e["event_action"] for e in pd.events] == ["trigger"]
    assert list(pd.open) == [f"topup-guard/{DEMO_API_KEY}/production/autoreload_disabled"]
