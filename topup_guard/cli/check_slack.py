"""``topup-guard check --slack``: prove the configured Slack takes a message, by sending one.

Through the same transports the guard posts with (``notify.transport``), so a webhook URL that
Slack rejects, a bot token without access to the channel, or a proxy in the way shows up now
rather than at the first alert. The result names what failed, never the URL or the token.
"""

from __future__ import annotations

import socket
from typing import Literal

from topup_guard.config import Settings, env_name

TIMEOUT = 10.0  # seconds for the one test message


def _test_message(s: Settings) -> tuple[str, str]:
    host = socket.gethostname()
    return (
        "check",
        f"topup-guard test message from `topup-guard check --slack` on {host} for account "
        f"{s.api_key or '(no key)'}: alerts for this account will arrive here.",
    )


async def send_test_message(s: Settings) -> tuple[Literal["ok", "problem"], str]:
    """("ok", where it went) or ("problem", why not)."""
    from topup_guard.notify.messages import SlackMessage
    from topup_guard.notify.transport import SlackSendError, WebApiTransport, WebhookTransport

    transport: WebhookTransport | WebApiTransport
    if s.slack_webhook_url is not None:
        transport = WebhookTransport(s.secret("slack_webhook_url"), request_timeout=TIMEOUT)
        where = f"the incoming webhook ({env_name('slack_webhook_url')})"
    elif s.slack_token is not None and s.slack_channel:
        transport = WebApiTransport(
            s.secret("slack_token"), s.slack_channel, request_timeout=TIMEOUT
        )
        where = f"channel {s.slack_channel} with the bot token"
    else:
        names = f"{env_name('slack_webhook_url')} or {env_name('slack_token')}"
        return "problem", f"--slack: Slack is not configured (set {names})"
    kind, text = _test_message(s)
    blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": text}}]
    try:
        await transport.post(SlackMessage(kind=kind, text=text, blocks=blocks))
    except SlackSendError as exc:
        return "problem", f"the test message was refused: {exc}"
    except Exception as exc:  # connection errors from inside slack-sdk: the class only, no URL
        return "problem", f"the test message could not be sent ({type(exc).__name__})"
    return "ok", f"test message sent to {where}"
