"""Build the dispatcher and its channels from Settings: the only notify code that reads them.

Each channel's module is imported only when that channel is configured, so a guard without
Slack never imports slack_sdk (~5 MB of resident memory).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

from topup_guard.clock import Clock
from topup_guard.config import Settings
from topup_guard.notify.channels import Channel
from topup_guard.notify.dispatcher import Dispatcher
from topup_guard.notify.note import Scope, kubernetes_namespace
from topup_guard.notify.outbox import Count


def scope_of(settings: Settings, environ: Mapping[str, str] | None = None) -> Scope:
    """Account and environment label; the environment defaults to the Kubernetes namespace."""
    return Scope(
        account=settings.api_key or "",
        account_name=settings.account_name,
        environment=settings.environment or kubernetes_namespace(environ),
    )


def _secret(settings: Settings, field: str) -> str | None:
    return settings.secret(field) if getattr(settings, field) is not None else None


def channels_of(
    settings: Settings, *, slack_api_url: str | None = None, request_timeout: float = 10.0
) -> list[Channel]:
    found: list[Channel] = []
    wanted = (settings.slack_webhook_url, settings.slack_token, settings.webhook_url,
              settings.pagerduty_routing_key)  # fmt: skip
    if any(value is not None for value in wanted):
        from topup_guard.tlsdefer import import_aiohttp

        import_aiohttp()  # every channel posts over aiohttp (slack_sdk's too): CA loading deferred
    if settings.slack_webhook_url is not None or settings.slack_token is not None:
        from topup_guard.notify.channels import slack

        built = slack.build(
            {f: _secret(settings, f) for f in ("slack_webhook_url", "slack_token")},
            settings.slack_channel,
            api_base_url=slack_api_url or slack.SLACK_API_URL,
            request_timeout=request_timeout,
        )
        if built is not None:
            found.append(built)
    if settings.webhook_url is not None:
        from topup_guard.notify.channels.webhook import WebhookChannel

        found.append(
            WebhookChannel(
                settings.secret("webhook_url"),
                _secret(settings, "webhook_secret"),
                request_timeout=request_timeout,
            )
        )
    if settings.pagerduty_routing_key is not None:
        from topup_guard.notify.channels.pagerduty import PagerDutyChannel

        found.append(
            PagerDutyChannel(
                settings.secret("pagerduty_routing_key"),
                settings.pagerduty_url,
                request_timeout=request_timeout,
            )
        )
    return found


def build_dispatcher(
    settings: Settings,
    *,
    clock: Clock | None = None,
    count: Count | None = None,
    slack_api_url: str | None = None,
    message_timeout: float = 30.0,
    request_timeout: float = 10.0,
    environ: Mapping[str, str] | None = None,
) -> Dispatcher:
    """Every configured channel behind one dispatcher (none configured: a no-op sink)."""
    return Dispatcher(
        channels_of(settings, slack_api_url=slack_api_url, request_timeout=request_timeout),
        scope=scope_of(settings, environ),
        clock=clock,
        repeat=settings.slack_repeat,
        group_wait=settings.notify_group_wait,
        queue_size=settings.slack_queue_size,
        message_timeout=message_timeout,
        count=count,
    )


async def send_test_message(
    settings: Settings, *, per_channel_s: float = 15.0, slack_api_url: str | None = None
) -> dict[str, str]:
    """Send one test message to every configured channel now; ``{channel: result}`` in words.

    For ``check``: it proves the URL or token works without waiting for an alert. PagerDuty is
    skipped (a test would page someone); its key is only checked when the first incident opens.
    """
    from topup_guard.notify.note import Note, Paragraph, Severity

    scope = scope_of(settings)
    note = Note(
        kind="test",
        severity=Severity.INFO,
        icon="🧪",
        title="topup-guard test message",
        summary="topup-guard test message: this channel receives the guard's notifications.",
        scope=scope,
        paragraphs=(Paragraph("Sent by `topup-guard check`; nothing happened to the balance."),),
    )
    results: dict[str, str] = {}
    for channel in channels_of(settings, slack_api_url=slack_api_url):
        if not channel.accepts(note):
            results[channel.name] = "skipped (it only takes alerts)"
            continue
        try:
            async with asyncio.timeout(per_channel_s):
                await channel.send(note)
            results[channel.name] = "sent"
        except TimeoutError:
            results[channel.name] = f"failed: no answer within {per_channel_s:g} s"
        except Exception as exc:  # reported, never raised: check goes on with the next one
            text = f"{type(exc).__name__}: {exc}"
            for secret in channel.secrets:
                text = text.replace(secret, "[redacted]")
            results[channel.name] = f"failed: {text[:200]}"
        finally:
            await channel.aclose()
    return results
