"""``topup-guard check --slack``: prove the configured channels take a message, by sending one.

Through the very channels the guard posts with (``notify.build.send_test_message``), so a webhook
URL that Slack rejects, a bot token without access to the channel, or a proxy in the way shows up
now rather than at the first alert. The result names what failed, never the URL or the token.
"""

from __future__ import annotations

from typing import Literal

from topup_guard.config import Settings, env_name

TIMEOUT = 10.0  # seconds for the one test message, per channel


async def send_test_message(s: Settings) -> tuple[Literal["ok", "problem"], str]:
    """("ok", where it went) or ("problem", why not)."""
    from topup_guard.notify.build import send_test_message as send_to_channels

    if s.slack_webhook_url is None and not (s.slack_token is not None and s.slack_channel):
        names = f"{env_name('slack_webhook_url')} or {env_name('slack_token')}"
        return "problem", f"--slack: Slack is not configured (set {names})"
    results = await send_to_channels(s, per_channel_s=TIMEOUT)
    slack = results.get("slack", "failed: no Slack channel was built")
    if slack == "sent":
        where = (
            f"the incoming webhook ({env_name('slack_webhook_url')})"
            if s.slack_webhook_url is not None
            else f"channel {s.slack_channel} with the bot token"
        )
        return "ok", f"test message sent to {where}"
    why = slack.removeprefix("failed: ").removeprefix("SlackSendError: ")
    return "problem", f"the test message was refused: {why}"
