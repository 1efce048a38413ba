"""The generic webhook and PagerDuty channels against local receivers, over real sockets."""

from __future__ import annotations

import logging
import socket
from collections.abc import AsyncIterator, Iterator
from decimal import Decimal
from typing import Any

import pytest

from topup_guard import retry
from topup_guard.clock import VirtualClock
from topup_guard.config import Settings
from topup_guard.events import (
    Condition,
    ConditionsChanged,
    Outcome,
    Started,
    Stopped,
    TopUpFinished,
)
from topup_guard.notify import Dispatcher
from topup_guard.notify.build import build_dispatcher

from .receivers import FakePagerDuty, WebhookReceiver

HMAC_KEY = "whsec-Canary-0123456789"
ROUTING_KEY = "R0CANARYROUTINGKEY0123456789ABCD"
C = Condition


@pytest.fixture(autouse=True)
def _no_backoff() -> Iterator[None]:
    retry.set_testing(True)
    yield
    retry.set_testing(False)


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
async def hook() -> AsyncIterator[WebhookReceiver]:
    receiver = WebhookReceiver(HMAC_KEY)
    await receiver.start()
    yield receiver
    await receiver.stop()


@pytest.fixture
async def pagerduty() -> AsyncIterator[FakePagerDuty]:
    fake = FakePagerDuty(ROUTING_KEY)
    await fake.start()
    yield fake
    await fake.stop()


def dispatcher(clock: VirtualClock | None = None, **env: Any) -> Dispatcher:
    settings = Settings(
        api_key="abcd1234",
        account_name="Acme SMS",
        environment="production",
        notify_group_wait=0,
        **env,
    )
    return build_dispatcher(settings, clock=clock or VirtualClock())


def topup_event(attempt_id: int = 1) -> TopUpFinished:
    return TopUpFinished(
        attempt_id=attempt_id,
        outcome=Outcome.SUCCEEDED,
        balance_before=Decimal("8.40"),
        expected_amount=Decimal("50"),
        credited=Decimal("50"),
        balance_after=Decimal("58.40"),
        reason="forecast below floor",
        rate=0.01,
        time_to_exhaustion=250.0,
        detail="Vonage confirmed the top-up",
        action_needed=None,
        requests=1,
        evidence="api",
        wall=1_800_000_000.0,
    )


def conditions(*active: Condition) -> ConditionsChanged:
    return ConditionsChanged(wall=1_800_000_000.0, active={c: f"{c.value} detail" for c in active})


async def test_webhook_posts_json_signed_over_the_body_that_a_verifying_receiver_accepts(
    hook: WebhookReceiver,
) -> None:
    notifier = dispatcher(webhook_url=hook.url, webhook_secret=HMAC_KEY)
    await notifier.start()
    notifier.emit(topup_event())
    await notifier.stop(timeout=5)
    assert len(hook.accepted) == 1
    body = hook.accepted[0]
    assert body["kind"] == "topup_succeeded"
    assert body["account"] == "abcd1234"
    assert body["account_name"] == "Acme SMS"
    assert body["environment"] == "production"
    assert body["text"].startswith("[production · Acme SMS (abcd1234)] Topped up 50.00 EUR")
    assert body["fields"]["Balance after"] == "58.40 EUR"
    assert body["incident"] is None
    assert hook.requests[0].headers["X-Topup-Guard-Signature-256"].startswith("sha256=")
    assert notifier.outbox("webhook").sent == 1


async def test_a_webhook_signed_with_another_key_is_refused_counted_and_not_resent(
    hook: WebhookReceiver,
) -> None:
    notifier = dispatcher(webhook_url=hook.url, webhook_secret="not-the-receivers-key")
    await notifier.start()
    notifier.emit(topup_event())
    await notifier.stop(timeout=5)
    assert hook.accepted == []
    assert len(hook.requests) == 1  # 401 is final
    assert (notifier.sent, notifier.failed) == (0, 1)


async def test_a_webhook_is_resent_after_a_503_with_the_same_id(hook: WebhookReceiver) -> None:
    hook.fail_next = 1
    notifier = dispatcher(webhook_url=hook.url, webhook_secret=HMAC_KEY)
    await notifier.start()
    notifier.emit(topup_event())
    await notifier.stop(timeout=5)
    assert len(hook.requests) == 2
    assert len(hook.accepted) == 1
    assert hook.requests[0].json["id"] == hook.requests[1].json["id"]  # receivers can dedup


async def test_an_unsigned_webhook_carries_no_signature_header() -> None:
    receiver = WebhookReceiver(secret=None)
    await receiver.start()
    try:
        notifier = dispatcher(webhook_url=receiver.url)
        await notifier.start()
        notifier.emit(Stopped(reason="SIGTERM"))
        await notifier.stop(timeout=5)
    finally:
        await receiver.stop()
    assert len(receiver.accepted) == 1
    assert "X-Topup-Guard-Signature-256" not in receiver.requests[0].headers


async def test_a_group_of_conditions_triggers_one_incident_and_resolves_it(
    pagerduty: FakePagerDuty,
) -> None:
    clock = VirtualClock()
    notifier = dispatcher(clock, pagerduty_routing_key=ROUTING_KEY, pagerduty_url=pagerduty.url)
    await notifier.start()
    four = (C.BREAKER_OPEN, C.AUTORELOAD_DISABLED, C.EXHAUSTION_FORECAST, C.LOW_BALANCE)
    notifier.emit(conditions(*four))
    clock.advance(60)
    notifier.emit(conditions(*four))
    assert await notifier.drain(timeout=5)
    key = "topup-guard/abcd1234/production/autoreload_disabled"
    assert list(pagerduty.open) == [key]
    trigger = pagerduty.open[key]
    assert trigger["payload"]["severity"] == "critical"
    assert trigger["payload"]["summary"].startswith("[production · Acme SMS (abcd1234)]")
    assert trigger["payload"]["custom_details"]["conditions"] == [c.value for c in (
        C.AUTORELOAD_DISABLED, C.BREAKER_OPEN, C.EXHAUSTION_FORECAST, C.LOW_BALANCE)]  # fmt: skip
    clock.advance(60)
    notifier.emit(conditions())
    await notifier.stop(timeout=5)
    assert pagerduty.resolved == [key]
    assert pagerduty.open == {}
    assert [e["event_action"] for e in pagerduty.events] == ["trigger", "resolve"]


async def test_pagerduty_gets_incidents_only(pagerduty: FakePagerDuty) -> None:
    notifier = dispatcher(pagerduty_routing_key=ROUTING_KEY, pagerduty_url=pagerduty.url)
    await notifier.start()
    notifier.emit(Started(policy={}, dry_run=False, coordination="SoleGuard"))
    notifier.emit(topup_event())
    notifier.emit(Stopped(reason="SIGTERM"))
    await notifier.stop(timeout=5)
    assert pagerduty.requests == []


async def test_a_deeper_cause_resolves_the_old_incident_and_triggers_its_own(
    pagerduty: FakePagerDuty,
) -> None:
    clock = VirtualClock()
    notifier = dispatcher(clock, pagerduty_routing_key=ROUTING_KEY, pagerduty_url=pagerduty.url)
    await notifier.start()
    notifier.emit(conditions(C.BREAKER_OPEN))
    clock.advance(30)
    notifier.emit(conditions(C.BREAKER_OPEN, C.AUTORELOAD_DISABLED))
    await notifier.stop(timeout=5)
    assert list(pagerduty.open) == ["topup-guard/abcd1234/production/autoreload_disabled"]
    assert pagerduty.resolved == ["topup-guard/abcd1234/production/breaker_open"]


async def test_a_wrong_routing_key_is_refused_and_not_resent(pagerduty: FakePagerDuty) -> None:
    notifier = dispatcher(pagerduty_routing_key="R0WRONG", pagerduty_url=pagerduty.url)
    await notifier.start()
    notifier.emit(conditions(C.CAP_REACHED))
    await notifier.stop(timeout=5)
    assert len(pagerduty.requests) == 1  # 400 is final
    assert notifier.failed == 1


async def test_channels_are_independent_and_counted_each(
    hook: WebhookReceiver, pagerduty: FakePagerDuty
) -> None:
    with socket.socket() as sock:  # a port nobody listens on: the webhook is down
        sock.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{sock.getsockname()[1]}/hook"
    counted: list[tuple[str, str]] = []
    settings = Settings(
        api_key="abcd1234",
        notify_group_wait=0,
        webhook_url=dead,
        pagerduty_routing_key=ROUTING_KEY,
        pagerduty_url=pagerduty.url,
    )
    notifier = build_dispatcher(
        settings, clock=VirtualClock(), count=lambda ch, result, _k: counted.append((ch, result))
    )
    await notifier.start()
    notifier.emit(conditions(C.CAP_REACHED))
    await notifier.stop(timeout=5)
    assert sorted(counted) == [("pagerduty", "sent"), ("webhook", "failed")]
    assert len(pagerduty.open) == 1


@pytest.mark.parametrize("mode", ["refused", "down"])
async def test_webhook_url_hmac_key_and_routing_key_never_appear_in_logs(
    hook: WebhookReceiver,
    pagerduty: FakePagerDuty,
    caplog: pytest.LogCaptureFixture,
    mode: str,
) -> None:
    caplog.set_level(logging.DEBUG)
    url = hook.url + "?token=UrlTokenCanary42"
    if mode == "down":
        await hook.stop()
        await pagerduty.stop()
    else:
        hook.fail_next = pagerduty.fail_next = 10  # every try answered 503
    notifier = dispatcher(
        webhook_url=url,
        webhook_secret=HMAC_KEY,
        pagerduty_routing_key=ROUTING_KEY,
        pagerduty_url=pagerduty.url,
    )
    await notifier.start()
    notifier.emit(conditions(C.BREAKER_OPEN))
    await notifier.stop(timeout=5)
    assert notifier.failed == 2
    logged = caplog.text + "".join(str(vars(r)) for r in caplog.records)
    assert "notification_send_failed" in logged
    for secret in ("UrlTokenCanary42", HMAC_KEY, ROUTING_KEY):
        assert secret not in logged


async def test_a_test_message_reaches_each_channel_that_takes_it(
    hook: WebhookReceiver, pagerduty: FakePagerDuty
) -> None:
    from topup_guard.notify.build import send_test_message

    settings = Settings(
        api_key="abcd1234",
        webhook_url=hook.url,
        webhook_secret=HMAC_KEY,
        pagerduty_routing_key=ROUTING_KEY,
        pagerduty_url=pagerduty.url,
    )
    results = await send_test_message(settings)
    assert results == {"webhook": "sent", "pagerduty": "skipped (it only takes alerts)"}
    assert [b["kind"] for b in hook.accepted] == ["test"]
    assert pagerduty.requests == []
    refused = await send_test_message(
        Settings(webhook_url=hook.url, webhook_secret="wrong-key"), per_channel_s=5
    )
    assert refused["webhook"].startswith("failed: NotificationError: webhook answered HTTP 401")


async def test_a_redirected_webhook_is_not_followed() -> None:
    from aiohttp import web

    target = WebhookReceiver(HMAC_KEY)
    await target.start()
    app = web.Application()

    async def redirect(request: web.Request) -> web.Response:
        raise web.HTTPTemporaryRedirect(target.url)

    app.router.add_post("/hook", redirect)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        notifier = dispatcher(
            webhook_url=f"http://127.0.0.1:{runner.addresses[0][1]}/hook", webhook_secret=HMAC_KEY
        )
        await notifier.start()
        notifier.emit(topup_event())
        await notifier.stop(timeout=5)
    finally:
        await runner.cleanup()
        await target.stop()
    assert target.requests == []  # the signed body never went where it was not configured
    assert notifier.failed == 1
