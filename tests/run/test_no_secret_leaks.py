"""No secret leaks — proven by looking at every byte that leaves the guard.

Distinctive canary values stand in for the API secret, the trx, the Slack bot token, the Slack
webhook path, an OTLP collector header and the signal endpoint's token. The real ``run`` process
goes through accepted and refused signals, polls, a failing poll, a successful, a FAILED and an
UNCONFIRMED top-up with Slack, OTLP export, the health server and DEBUG logs on; the CLI's
``config``, ``config --json`` and ``check`` and a bad-config run follow; what a process cannot
show (the Slack Web API path, exception texts, ``repr``) is exercised in-process. Every surface
is then searched for each canary in each encoding it could take (raw, percent-encoded, the Basic
credential in base64).

A canary is allowed only where it is the credential itself: in the ``Authorization`` header to
Vonage and Slack, in the webhook URL's path, and in the collector's request headers. Those are
never searched; request *bodies* are.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator, Iterator
from decimal import Decimal
from pathlib import Path
from urllib.parse import quote, quote_plus

import aiohttp
import pytest

from tests.conftest import QUIET_SCENARIO
from tests.notify.receivers import FakePagerDuty, WebhookReceiver
from tests.otlp_receiver import Receiver
from tests.run.guardproc import GuardProcess, free_port, get, guard_env, until
from tests.run.slack_receiver import SlackReceiver
from tests.run.test_observability_e2e import otel_env
from tests.simctl import sim_post, sim_state
from topup_guard import redact
from topup_guard.config import load_settings
from topup_guard.errors import VonageError
from topup_guard.events import Started, Stopped
from topup_guard.notify.build import build_dispatcher
from topup_guard.sim import RunningSimulator, SimCredentials, start_simulator
from topup_guard.vonage.client import VonageClient

API_KEY = "demokey9"  # not a secret: shown by `config` and in paths
API_SECRET = "Zq9LeakCanary1"
TRX = "feedbeef" + "c0ffee42" * 3  # 32 hex digits, as a real trx
SLACK_TOKEN = "xoxb-leak-canary-123"
HOOK_SECRET = "HookCanary9zz"
HOOK_PATH = f"/services/T0CANARY/B0CANARY/{HOOK_SECRET}"
OTLP_KEY = "OtlpCanary77"
HOOK_TOKEN = "WebhookTok3nCanary"  # a token in the generic webhook's URL
HMAC_KEY = "HmacKeyCanary55"
ROUTING_KEY = "R0RoutingKeyCanary0123456789ABC"
SIGNAL_TOKEN = "SignalCanary0123456789"

CANARIES = {
    "api secret": API_SECRET,
    "trx": TRX,
    "slack token": SLACK_TOKEN,
    "webhook path": HOOK_SECRET,
    "otlp header": OTLP_KEY,
    "webhook url token": HOOK_TOKEN,
    "webhook hmac key": HMAC_KEY,
    "pagerduty routing key": ROUTING_KEY,
    "signal token": SIGNAL_TOKEN,
    "basic credential": base64.b64encode(f"{API_KEY}:{API_SECRET}".encode()).decode(),
}


def forms(value: str) -> set[str]:
    """Every spelling of ``value`` a leak could take."""
    return {value, quote(value, safe=""), quote_plus(value), value.upper(), value.lower()}


def leaks(surface: str | bytes) -> list[str]:
    """The canaries (by name) found anywhere in ``surface``."""
    text = surface.decode("utf-8", "replace") if isinstance(surface, bytes) else surface
    return [name for name, v in CANARIES.items() if any(f in text for f in forms(v))]


def assert_clean(surfaces: dict[str, str | bytes]) -> None:
    found = {name: leaks(text) for name, text in surfaces.items()}
    dirty = {name: hits for name, hits in found.items() if hits}
    assert not dirty, f"secrets leaked: {dirty}"
    assert all(surfaces.values()), [n for n, t in surfaces.items() if not t]  # nothing vacuous


def test_the_leak_detector_finds_every_canary_in_every_spelling() -> None:
    for value in CANARIES.values():
        for form in forms(value):
            assert leaks(f"x {form} y"), form
    assert leaks("nothing secret here") == []


@pytest.fixture
async def canary_sim() -> AsyncIterator[RunningSimulator]:
    """The simulator accepting only the canary credentials."""
    creds = SimCredentials(API_KEY, API_SECRET, TRX)
    running = await start_simulator("127.0.0.1", 0, scenario=QUIET_SCENARIO, credentials=creds)
    yield running
    await running.stop()


@pytest.fixture
async def hook() -> AsyncIterator[SlackReceiver]:
    receiver = SlackReceiver(webhook_path=HOOK_PATH)
    await receiver.start()
    yield receiver
    await receiver.stop()


@pytest.fixture
async def receivers() -> AsyncIterator[tuple[WebhookReceiver, FakePagerDuty]]:
    webhook, pagerduty = WebhookReceiver(HMAC_KEY), FakePagerDuty(ROUTING_KEY)
    await webhook.start()
    await pagerduty.start()
    yield webhook, pagerduty
    await webhook.stop()
    await pagerduty.stop()


@pytest.fixture(autouse=True)
def _forget_secrets() -> Iterator[None]:
    """In-process parts register the canaries; later tests must not inherit the masking."""
    redact.clear_secrets()
    yield
    redact.clear_secrets()


def canary_env(sim: RunningSimulator, tmp_path: Path, **extra: str) -> dict[str, str]:
    return guard_env(
        sim,
        tmp_path / "ledger.db",
        api_key=API_KEY,
        api_secret=API_SECRET,
        trx=TRX,
        TOPUP_GUARD_LOG_LEVEL="DEBUG",  # the widest log surface
        TOPUP_GUARD_MAX_TOPUPS_PER_HOUR="20",
        **extra,
    )


async def _post_signals(port: int) -> list[int]:
    url = f"http://127.0.0.1:{port}/v1/signals/sms"
    answer = {"messages": [{"status": "0", "remaining-balance": "5.00000000"}]}
    attempts: list[tuple[str, object]] = [
        (f"Bearer {SIGNAL_TOKEN}", answer),
        (f"Bearer {SIGNAL_TOKEN}x", answer),
        (f"Bearer {SIGNAL_TOKEN}", {"messages": SIGNAL_TOKEN}),
    ]
    statuses = []
    async with aiohttp.ClientSession() as http:
        for header, body in attempts:
            async with http.post(url, json=body, headers={"Authorization": header}) as got:
                statuses.append(got.status)
                assert SIGNAL_TOKEN not in await got.text()
    return statuses


async def _count(guard: GuardProcess, event: str, n: int, timeout: float = 10.0) -> None:
    await until(lambda: len(guard.events(event)) >= n, timeout=timeout)


async def test_the_worker_leaks_no_secret_through_any_output(
    canary_sim: RunningSimulator,
    hook: SlackReceiver,
    receivers: tuple[WebhookReceiver, FakePagerDuty],
    collector: Receiver,
    tmp_path: Path,
) -> None:
    sim, port, signal_port = canary_sim, free_port(), free_port()
    webhook, pagerduty = receivers
    otel = otel_env(collector) | {"OTEL_EXPORTER_OTLP_HEADERS": f"x-api-key={OTLP_KEY}"}
    env = canary_env(
        sim,
        tmp_path,
        TOPUP_GUARD_HEALTH_PORT=str(port),
        TOPUP_GUARD_SIGNAL_PORT=str(signal_port),
        TOPUP_GUARD_SIGNAL_TOKEN=SIGNAL_TOKEN,
        TOPUP_GUARD_SLACK_WEBHOOK_URL=hook.webhook_url,
        TOPUP_GUARD_WEBHOOK_URL=f"{webhook.url}?token={HOOK_TOKEN}",
        TOPUP_GUARD_WEBHOOK_SECRET=HMAC_KEY,
        TOPUP_GUARD_PAGERDUTY_ROUTING_KEY=ROUTING_KEY,
        TOPUP_GUARD_PAGERDUTY_URL=pagerduty.url,
        TOPUP_GUARD_NOTIFY_GROUP_WAIT="0",
        **otel,
    )
    await sim_post(sim, "/_sim/faults", {"endpoint": "get-balance", "kind": "html_error"})
    guard = await GuardProcess.start(env)
    http: dict[str, str | bytes] = {}
    try:
        await guard.event("guard_started")
        # 0. signals: accepted, a near-miss token, a rejected body that quotes the token
        signals = await _post_signals(signal_port)
        assert signals == [202, 401, 400], signals
        # 1. a successful top-up
        await sim_post(sim, "/_sim/control", {"balance": "5", "spend_rate": "0.01"})
        await _count(guard, "topup_succeeded", 1)
        # 2. a refused payment: FAILED (the guard may then succeed on its own)
        await sim_post(sim, "/_sim/control", {"balance": "5", "fail_payments": 1})
        await _count(guard, "topup_failed", 1)
        await until(lambda: sim.account.balance > 10, timeout=20)
        # ... and the guard has seen that credit (else the drop below would hide it).
        await _count(guard, "topup_succeeded", 2, timeout=20)
        # 3. a 500 before Vonage applied it: UNCONFIRMED after the settle window
        await sim_post(sim, "/_sim/faults", {"endpoint": "top-up", "kind": "error_500_before"})
        await sim_post(sim, "/_sim/control", {"balance": "5"})
        await _count(guard, "topup_unconfirmed", 1, timeout=30)
        for path in ("/status", "/metrics", "/livez", "/readyz"):
            code, body = await get(f"http://127.0.0.1:{port}{path}")
            http[path] = f"{code} {body}"
    finally:
        code, _ = await guard.terminate(timeout=15)
    assert code == 0, guard.output
    assert "topup_guard_topups" in str(http["/metrics"])

    surfaces: dict[str, str | bytes] = {
        "stdout": "\n".join(guard.stdout),
        "stderr": "\n".join(guard.stderr) or "(empty)",
        **{f"GET {path}": body for path, body in http.items()},
        **{f"slack post {i}": post.body for i, post in enumerate(hook.posts)},
        **{f"webhook post {i}": r.body for i, r in enumerate(webhook.requests)},
        # PagerDuty bodies carry the routing key (that is where it belongs): only their text.
        **{f"pagerduty summary {i}": str(e.get("payload")) for i, e in enumerate(pagerduty.events)},
        **{f"otlp body {i}": body for i, body in enumerate(collector.bodies)},
    }
    assert_clean(surfaces)
    # The searched surfaces really carried the story (else "no leak" would prove nothing).
    slack_text = " ".join(hook.texts())
    for what in ("started", "Topped up", "Top-up failed", "could not be confirmed", "stopped"):
        assert what in slack_text, what
    assert len(webhook.accepted) == len(hook.posts)  # every note, HMAC verified
    assert pagerduty.events, "an incident reached PagerDuty"
    assert collector.traces
    assert collector.metrics
    assert any(p.headers.get("Authorization") is None for p in hook.posts)
    assert collector.headers[0]["x-api-key"] == OTLP_KEY  # the credential went where it belongs
    records = guard.records()
    assert any(r["level"] == "debug" for r in records), "DEBUG lines were searched too"
    rejected = {r["reason"] for r in guard.events("signal_rejected")}
    assert rejected == {"unauthorized", "wrong_shape"}, "signal rejects were logged and searched"
    calls = (await sim_state(sim))["calls"]
    assert calls["get-balance"]["502"] == 1, "a failed read (retried) was part of the run"


async def test_cli_commands_and_a_bad_config_leak_no_secret(
    canary_sim: RunningSimulator, tmp_path: Path
) -> None:
    env = canary_env(
        canary_sim,
        tmp_path,
        TOPUP_GUARD_SLACK_TOKEN=SLACK_TOKEN,
        TOPUP_GUARD_SLACK_CHANNEL="#ops",
        TOPUP_GUARD_SLACK_WEBHOOK_URL=f"https://hooks.slack.com{HOOK_PATH}",
        TOPUP_GUARD_SIGNAL_TOKEN=SIGNAL_TOKEN,
    )
    bad = env | {
        "TOPUP_GUARD_POLL_MIN": API_SECRET,  # a secret pasted into the wrong variable
        "TOPUP_GUARD_REST_URL": f"https://{API_KEY}:{API_SECRET}@rest.nexmo.com/?trx={TRX}",
        "TOPUP_GUARD_SLACK_CHANNEL": "",
    }
    runs = {
        "config": (env, ("config",)),
        "config --json": (env, ("config", "--json")),
        "check": (env, ("check",)),
        "run (bad config)": (bad, ("run",)),
    }
    started = {name: await GuardProcess.start(e, *argv) for name, (e, argv) in runs.items()}
    exits = await asyncio.gather(*(g.wait() for g in started.values()))
    codes = dict(zip(started, exits, strict=True))
    assert codes["config"] == codes["config --json"] == 0
    assert codes["run (bad config)"] == 2
    assert "[redacted]" in started["config"].output or "******" in started["config"].output
    json.loads("\n".join(started["config --json"].stdout))
    bad_lines = started["run (bad config)"].stderr
    assert any("TOPUP_GUARD_POLL_MIN" in line for line in bad_lines), bad_lines
    assert any("TOPUP_GUARD_REST_URL" in line for line in bad_lines), bad_lines
    assert_clean({name: g.output or "(empty)" for name, g in started.items()})


async def test_in_process_surfaces_leak_no_secret(
    canary_sim: RunningSimulator, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Slack's Web API path, exception texts and reprs: what no process output shows."""
    slack = SlackReceiver()
    await slack.start()
    surfaces: dict[str, str | bytes] = {}
    try:
        slack_env = {"TOPUP_GUARD_SLACK_TOKEN": SLACK_TOKEN, "TOPUP_GUARD_SLACK_CHANNEL": "#ops"}
        env = canary_env(canary_sim, tmp_path, **slack_env)
        settings = load_settings(env)
        surfaces["repr(settings)"] = repr(settings) + str(settings.masked())
        notifier = build_dispatcher(settings, slack_api_url=slack.api_url)
        await notifier.start()
        notifier.emit(Started(policy=settings.masked(), dry_run=False, coordination="SoleGuard"))
        notifier.emit(Stopped(reason="stop requested"))
        await notifier.stop(timeout=5)
        assert len(slack.posts) == 2
        assert slack.posts[0].headers["Authorization"] == f"Bearer {SLACK_TOKEN}"
        surfaces.update({f"web api post {i}": p.body for i, p in enumerate(slack.posts)})

        wrong = VonageClient(API_KEY, API_SECRET + "x", rest_url=canary_sim.url)
        right = VonageClient(API_KEY, API_SECRET, rest_url=canary_sim.url)
        surfaces["repr(client)"] = repr(right) + repr(wrong)
        errors: list[BaseException] = []
        async with wrong, right:
            for call in (wrong.get_balance(), wrong.top_up(TRX)):
                errors.append(await _raised(call))
            for kind in ("error_500_before", "reset_after", "malformed_json", "html_error"):
                await sim_post(canary_sim, "/_sim/faults", {"endpoint": "top-up", "kind": kind})
                errors.append(await _raised(right.top_up(TRX)))
        assert all(isinstance(e, VonageError) for e in errors), errors
        for i, exc in enumerate(errors):
            surfaces[f"exception {i} {type(exc).__name__}"] = f"{exc} {exc!r} {exc.args!r}"
        surfaces["log records"] = (
            "\n".join(f"{r.getMessage()} {r.__dict__}" for r in caplog.records) or "(none)"
        )
    finally:
        await slack.stop()
    assert_clean(surfaces)
    assert canary_sim.account.balance == Decimal("100") + len(canary_sim.account.topups) * 50


async def _raised(call: object) -> BaseException:
    assert asyncio.iscoroutine(call)
    try:
        await call
    except Exception as exc:
        return exc
    raise AssertionError("the call was expected to fail")
