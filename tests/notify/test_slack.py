"""The dispatcher's Slack channel against a local aiohttp server standing in for Slack, over
real sockets.

The fake serves both the incoming-webhook endpoint and the Web API's ``chat.postMessage``, and
can answer normally, rate-limit (429 + Retry-After), stall, or refuse (``{"ok": false}``).
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import pytest
from aiohttp import web

from topup_guard.clock import SystemClock, VirtualClock
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
from topup_guard.notify import Dispatcher
from topup_guard.notify.build import build_dispatcher

HOOK_PATH = "/services/T/B/X"
TOKEN = "xoxb-4242-test-token-Secret"


class FakeSlack:
    """A Slack stand-in. ``mode``: ok | rate_limit_once | stall | ok_false | http_500."""

    def __init__(self) -> None:
        self.mode = "ok"
        self.received: list[dict[str, Any]] = []
        self.requests = 0
        self.auth: list[str | None] = []
        self.release = asyncio.Event()
        self.url = ""

    async def _answer(self, request: web.Request) -> web.Response | None:
        self.requests += 1
        if self.mode == "stall":
            await self.release.wait()
            return web.Response(status=503)
        if self.mode == "rate_limit_once" and self.requests == 1:
            return web.Response(status=429, headers={"Retry-After": "0"}, text="rate_limited")
        if self.mode == "http_500":
            return web.Response(status=500, text="internal_error")
        return None

    async def webhook(self, request: web.Request) -> web.Response:
        early = await self._answer(request)
        if early is not None:
            return early
        self.received.append(await request.json())
        return web.Response(text="ok")

    async def post_message(self, request: web.Request) -> web.Response:
        early = await self._answer(request)
        if early is not None:
            return early
        self.auth.append(request.headers.get("Authorization"))
        if self.mode == "ok_false":
            return web.json_response({"ok": False, "error": "channel_not_found"})
        body = await request.json()
        self.received.append(body)
        return web.json_response({"ok": True, "channel": body["channel"], "ts": "1.2"})


@pytest.fixture
async def slack(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[FakeSlack]:
    for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy"):
        monkeypatch.delenv(name, raising=False)  # slack-sdk would route 127.0.0.1 via a proxy
    fake = FakeSlack()
    app = web.Application()
    app.router.add_post(HOOK_PATH, fake.webhook)
    app.router.add_post("/api/chat.postMessage", fake.post_message)
    runner = web.AppRunner(app, access_log=None)  # the access log would show the hook path
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    fake.url = f"http://127.0.0.1:{port}"
    yield fake
    fake.release.set()
    await runner.cleanup()


class Counts:
    """The dispatcher's count hook, recording (channel, result, kind)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, str]] = []

    def __call__(self, channel: str, result: str, kind: str) -> None:
        self.calls.append((channel, result, kind))

    def kinds(self, result: str) -> list[str]:
        return [kind for _, r, kind in self.calls if r == result]


def webhook_notifier(slack: FakeSlack, clock: VirtualClock | None = None, **kw: Any) -> Dispatcher:
    settings = Settings(
        api_key="abcd1234",
        environment="staging",
        slack_webhook_url=slack.url + HOOK_PATH,
        slack_repeat=kw.pop("repeat", 3600.0),
        slack_queue_size=kw.pop("queue_size", 100),
        notify_group_wait=kw.pop("group_wait", 0.0),
    )
    return build_dispatcher(settings, clock=clock or VirtualClock(), **kw)


def api_notifier(slack: FakeSlack, **kw: Any) -> Dispatcher:
    settings = Settings(api_key="abcd1234", slack_token=TOKEN, slack_channel="#sms-ops")
    return build_dispatcher(settings, clock=VirtualClock(), slack_api_url=slack.url + "/api/", **kw)


def said(message: dict[str, Any]) -> str:
    """A message's fallback text without its scope prefix ("[staging · abcd1234] ")."""
    text = str(message["text"])
    return text.split("] ", 1)[1] if text.startswith("[") else text


def topup_event(attempt_id: int = 1, outcome: Outcome = Outcome.SUCCEEDED) -> TopUpFinished:
    return TopUpFinished(
        attempt_id=attempt_id,
        outcome=outcome,
        balance_before=Decimal("8.40"),
        expected_amount=Decimal("50"),
        credited=Decimal("50"),
        balance_after=Decimal("58.40"),
        reason="forecast below floor",
        rate=0.01,
        time_to_exhaustion=250.0,
        detail="credited",
        action_needed=None,
        requests=1,
        evidence="api",
    )


def conditions(*active: Condition) -> ConditionsChanged:
    return ConditionsChanged(wall=0.0, active={c: f"{c.value} detail" for c in active})


def headers_of(slack: FakeSlack) -> list[str]:
    return [block["text"]["text"] for m in slack.received for block in m["blocks"][:1]]


async def test_webhook_message_arrives_with_blocks_and_text(slack: FakeSlack) -> None:
    notifier = webhook_notifier(slack)
    await notifier.start()
    notifier.emit(
        Started(policy={"TOPUP_GUARD_MIN_BALANCE": "10"}, dry_run=False, coordination="x")
    )
    notifier.emit(topup_event())
    await notifier.stop(timeout=5)
    assert len(slack.received) == 2
    assert all(m["text"] and m["blocks"] for m in slack.received)
    assert said(slack.received[1]).startswith("Topped up 50.00 EUR")
    assert slack.received[1]["text"].startswith("[staging · abcd1234] ")
    assert notifier.sent == 2
    assert notifier.failed == notifier.dropped == 0


async def test_web_api_posts_to_the_channel_with_the_bot_token(slack: FakeSlack) -> None:
    notifier = api_notifier(slack)
    await notifier.start()
    notifier.emit(Stopped(reason="SIGTERM"))
    await notifier.stop(timeout=5)
    assert [m["channel"] for m in slack.received] == ["#sms-ops"]
    assert slack.received[0]["blocks"][0]["type"] == "header"
    assert "SIGTERM" in slack.received[0]["text"]
    assert slack.auth == [f"Bearer {TOKEN}"]


async def test_polls_are_not_posted_and_one_topup_is_one_message(slack: FakeSlack) -> None:
    notifier = webhook_notifier(slack)
    await notifier.start()
    notifier.emit(PollFailed(wall=1.0, error_type="TransportError", message="timeout"))
    notifier.emit(topup_event(attempt_id=5))
    notifier.emit(topup_event(attempt_id=5))  # the same top-up reported twice
    await notifier.stop(timeout=5)
    assert len(slack.received) == 1


async def test_condition_is_announced_at_start_repeated_rarely_and_at_recovery(
    slack: FakeSlack,
) -> None:
    clock = VirtualClock()
    notifier = webhook_notifier(slack, clock, repeat=600.0)
    await notifier.start()

    notifier.emit(conditions(Condition.LOW_BALANCE))  # starts -> announced
    for _ in range(9):  # identical snapshots every minute -> nothing
        clock.advance(60)
        notifier.emit(conditions(Condition.LOW_BALANCE))
    assert await notifier.drain(timeout=5)
    assert len(slack.received) == 1

    clock.advance(60)  # 600 s after the announcement -> one reminder
    notifier.emit(conditions(Condition.LOW_BALANCE))
    clock.advance(60)
    notifier.emit(conditions(Condition.LOW_BALANCE))
    assert await notifier.drain(timeout=5)
    assert len(slack.received) == 2
    assert said(slack.received[1]).startswith("Still: Balance below the floor")

    clock.advance(60)
    notifier.emit(conditions())  # ended -> recovered, with how long it lasted
    notifier.emit(conditions())
    await notifier.stop(timeout=5)
    assert len(slack.received) == 3
    assert said(slack.received[2]).startswith("Recovered:")
    assert "lasted 12 min" in slack.received[2]["text"]


async def test_independent_causes_transition_separately(slack: FakeSlack) -> None:
    notifier = webhook_notifier(slack)
    await notifier.start()
    notifier.emit(conditions(Condition.CAP_REACHED))
    notifier.emit(conditions(Condition.CAP_REACHED, Condition.BREAKER_OPEN))
    notifier.emit(conditions(Condition.BREAKER_OPEN))
    notifier.emit(conditions(Condition.BREAKER_OPEN))
    await notifier.stop(timeout=5)
    assert headers_of(slack) == [
        "🛑 Top-up cap reached",
        "🚨 Circuit breaker open: top-ups paused",
        "🟢 Recovered: Top-up cap reached",
    ]


async def test_dry_run_decisions_are_posted_at_most_once_per_repeat(slack: FakeSlack) -> None:
    clock = VirtualClock()
    notifier = webhook_notifier(slack, clock, repeat=600.0)
    await notifier.start()
    for attempt in range(20):  # every 60 s the same dry-run decision comes back
        notifier.emit(topup_event(attempt, Outcome.DRY_RUN))
        clock.advance(60)
    await notifier.stop(timeout=5)
    texts = [said(m) for m in slack.received]
    assert len(texts) == 2
    assert all(t.startswith("DRY RUN — would have topped up 50.00 EUR") for t in texts)
    assert "9 more dry-run decisions" in texts[1]


async def test_rate_limited_message_is_retried_and_arrives(slack: FakeSlack) -> None:
    slack.mode = "rate_limit_once"
    notifier = webhook_notifier(slack)
    await notifier.start()
    notifier.emit(topup_event())
    await notifier.stop(timeout=5)
    assert slack.requests == 2
    assert len(slack.received) == 1
    assert (notifier.sent, notifier.failed) == (1, 0)


async def test_emit_returns_at_once_while_slack_stalls_and_drops_are_counted(
    slack: FakeSlack, caplog: pytest.LogCaptureFixture
) -> None:
    slack.mode = "stall"
    counts = Counts()
    notifier = webhook_notifier(slack, queue_size=10, count=counts)
    await notifier.start()
    notifier.emit(topup_event(attempt_id=0))
    await asyncio.sleep(0.05)  # the worker takes it and hangs on the stalled Slack
    assert slack.requests == 1

    began = time.perf_counter()
    for attempt in range(1, 1001):
        notifier.emit(topup_event(attempt_id=attempt))
    elapsed = time.perf_counter() - began

    assert elapsed < 0.5  # a stalled Slack would take forever; emit never waits for it
    assert notifier.pending == 10
    assert notifier.dropped == 990
    assert len(counts.kinds("dropped")) == 990
    assert set(counts.kinds("dropped")) == {"topup_succeeded"}
    assert {c for c, _, _ in counts.calls} == {"slack"}
    assert [r.levelname for r in caplog.records if r.message == "notification_dropped"] == [
        "WARNING"
    ]  # counted every time, logged once a minute at most
    await notifier.stop(timeout=0.5)


async def test_stop_returns_within_its_timeout_against_a_stalled_slack(
    slack: FakeSlack, caplog: pytest.LogCaptureFixture
) -> None:
    slack.mode = "stall"
    notifier = webhook_notifier(slack)
    await notifier.start()
    for attempt in range(3):
        notifier.emit(topup_event(attempt_id=attempt))
    await asyncio.sleep(0.05)
    began = time.perf_counter()
    await notifier.stop(timeout=0.5)
    assert time.perf_counter() - began < 0.7
    assert any(r.message == "notification_stop_timeout" for r in caplog.records)
    notifier.emit(topup_event(attempt_id=99))  # after stop: dropped, never raised
    assert notifier.dropped == 1


async def test_one_message_is_given_up_after_the_message_timeout(slack: FakeSlack) -> None:
    slack.mode = "stall"
    notifier = webhook_notifier(slack, message_timeout=0.2)
    await notifier.start()
    notifier.emit(topup_event())
    assert await notifier.drain(timeout=2)
    assert (notifier.sent, notifier.failed) == (0, 1)
    await notifier.stop(timeout=1)


async def test_slack_down_emit_still_returns_at_once_and_failures_are_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with socket.socket() as sock:  # a port nobody listens on: connection refused
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    settings = Settings(slack_webhook_url=f"http://127.0.0.1:{port}{HOOK_PATH}", slack_queue_size=2)
    counts = Counts()
    notifier = build_dispatcher(settings, clock=VirtualClock(), count=counts)
    await notifier.start()
    began = time.perf_counter()
    for attempt in range(50):
        notifier.emit(topup_event(attempt_id=attempt))
    assert time.perf_counter() - began < 0.5
    assert notifier.dropped == 48
    assert any(r.message == "notification_dropped" for r in caplog.records)
    assert await notifier.drain(timeout=5)  # two messages, one retry each after a backoff
    assert notifier.failed == 2
    assert counts.kinds("failed") == ["topup_succeeded"] * 2
    assert any(r.message == "notification_send_failed" for r in caplog.records)
    await notifier.stop(timeout=1)


async def test_web_api_ok_false_is_logged_and_counted(
    slack: FakeSlack, caplog: pytest.LogCaptureFixture
) -> None:
    slack.mode = "ok_false"
    notifier = api_notifier(slack)
    await notifier.start()
    notifier.emit(topup_event())
    await notifier.stop(timeout=5)
    assert (notifier.sent, notifier.failed) == (0, 1)
    failures = [r for r in caplog.records if r.message == "notification_send_failed"]
    assert len(failures) == 1
    assert "channel_not_found" in failures[0].error  # type: ignore[attr-defined]


def everything_logged(caplog: pytest.LogCaptureFixture) -> str:
    """Messages, extras and exception text of every captured record."""
    parts = [caplog.text]
    for record in caplog.records:
        parts.extend(str(v) for v in vars(record).values())
    return "\n".join(parts)


@pytest.mark.parametrize("mode", ["rate_limit_once", "http_500", "ok_false", "stall"])
async def test_webhook_url_and_token_never_appear_in_logs(
    slack: FakeSlack, caplog: pytest.LogCaptureFixture, mode: str
) -> None:
    caplog.set_level(logging.DEBUG)  # even at DEBUG, slack-sdk must not log URLs or headers
    slack.mode = mode
    for notifier in (
        webhook_notifier(slack, message_timeout=0.5),
        api_notifier(slack, message_timeout=0.5),
    ):
        await notifier.start()
        notifier.emit(topup_event())
        await notifier.stop(timeout=2)
    logged = everything_logged(caplog)
    assert "/services/T/B/X" not in logged
    assert "T/B/X" not in logged
    assert TOKEN not in logged
    assert "test-token-Secret" not in logged


async def test_without_slack_settings_the_notifier_does_nothing_and_says_so_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    notifier = build_dispatcher(Settings(), clock=VirtualClock())
    assert not notifier.enabled
    await notifier.start()
    notifier.emit(topup_event())
    notifier.emit(conditions(Condition.LOW_BALANCE))
    await notifier.stop(timeout=1)
    assert [r.message for r in caplog.records if r.name.startswith("topup_guard")] == [
        "notifications_disabled"
    ]
    assert (notifier.sent, notifier.dropped, notifier.pending) == (0, 0, 0)


async def test_a_broken_metrics_hook_does_not_stop_notifications(slack: FakeSlack) -> None:
    def broken(channel: str, result: str, kind: str) -> None:
        raise RuntimeError("metrics backend gone")

    notifier = webhook_notifier(slack, count=broken)
    await notifier.start()
    notifier.emit(topup_event(attempt_id=1))
    notifier.emit(topup_event(attempt_id=2))
    await notifier.stop(timeout=5)
    assert notifier.sent == 2
    assert len(slack.received) == 2


async def test_a_waiting_group_is_sent_when_its_time_comes_without_another_event(
    slack: FakeSlack,
) -> None:
    notifier = webhook_notifier(slack, SystemClock(), group_wait=0.2)  # type: ignore[arg-type]
    await notifier.start()
    notifier.emit(conditions(Condition.AUTORELOAD_DISABLED, Condition.LOW_BALANCE))
    await asyncio.sleep(0.05)
    assert slack.received == []  # still waiting for the rest of its cause
    for _ in range(40):
        await asyncio.sleep(0.05)
        if slack.received:
            break
    assert headers_of(slack) == ["⛔ Auto-reload is disabled: the guard cannot top up"]
    await notifier.stop(timeout=5)


async def test_a_group_still_waiting_at_stop_is_sent_before_the_stop_message(
    slack: FakeSlack,
) -> None:
    notifier = webhook_notifier(slack, group_wait=30)
    await notifier.start()
    notifier.emit(conditions(Condition.CAP_REACHED))
    notifier.emit(Stopped(reason="SIGTERM"))
    await notifier.stop(timeout=5)
    assert headers_of(slack) == ["🛑 Top-up cap reached", "⏹️ topup-guard stopped"]
