"""The two ways to post to Slack (incoming webhook, Web API bot token), behind one ``post()``.

Retries of Slack 429 (honouring Retry-After) and of connection errors are slack-sdk's own async
retry handlers; the dispatcher bounds the total time per message on top. Failures are raised as
``SlackSendError`` whose text holds only the HTTP status and Slack's error code, never the
webhook URL or the token. Imported only when Slack is configured (slack_sdk costs ~5 MB).
slack-sdk logs full URLs (a webhook URL *is* a credential) at DEBUG/INFO whenever its logger's
own level is unset, so its clients get a private logger fixed at WARNING.
"""

from __future__ import annotations

import logging
import math
from typing import Any, Protocol

from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.async_handler import AsyncRetryHandler
from slack_sdk.http_retry.builtin_async_handlers import (
    AsyncConnectionErrorRetryHandler,
    AsyncRateLimitErrorRetryHandler,
)
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.webhook.async_client import AsyncWebhookClient

from topup_guard.errors import NotificationError

SLACK_API_URL = "https://slack.com/api/"

_sdk_logger = logging.getLogger("topup_guard.notify.sdk")
_sdk_logger.setLevel(logging.WARNING)  # keeps slack-sdk's URL-bearing debug/info lines off


class SlackSendError(NotificationError):
    """Slack did not take the message. The text is safe to log (no URL, no token)."""


class Transport(Protocol):
    async def post(self, text: str, blocks: list[dict[str, Any]]) -> None:
        """Post one message or raise (SlackSendError, or a connection error)."""


def _retry_handlers(rate_limit_retries: int) -> list[AsyncRetryHandler]:
    return [
        AsyncRateLimitErrorRetryHandler(max_retry_count=rate_limit_retries),
        AsyncConnectionErrorRetryHandler(max_retry_count=1),
    ]


def _timeout(seconds: float) -> int:
    return max(1, math.ceil(seconds))  # slack-sdk takes whole seconds


class WebhookTransport:
    """An incoming webhook: the URL is the credential."""

    def __init__(self, url: str, *, request_timeout: float = 10, rate_limit_retries: int = 2):
        self._client = AsyncWebhookClient(
            url=url,
            timeout=_timeout(request_timeout),
            logger=_sdk_logger,
            retry_handlers=_retry_handlers(rate_limit_retries),
        )

    async def post(self, text: str, blocks: list[dict[str, Any]]) -> None:
        response = await self._client.send(text=text, blocks=blocks)
        if response.status_code != 200:
            # Webhook errors are short codes such as "invalid_payload" or "no_service".
            body = (response.body or "").strip()[:80]
            raise SlackSendError(f"webhook answered HTTP {response.status_code}: {body}")


class WebApiTransport:
    """``chat.postMessage`` with a bot token (sent in the Authorization header by slack-sdk)."""

    def __init__(
        self,
        token: str,
        channel: str,
        *,
        base_url: str = SLACK_API_URL,
        request_timeout: float = 10,
        rate_limit_retries: int = 2,
    ):
        self._channel = channel
        self._client = AsyncWebClient(
            token=token,
            base_url=base_url,
            timeout=_timeout(request_timeout),
            logger=_sdk_logger,
            retry_handlers=_retry_handlers(rate_limit_retries),
        )

    async def post(self, text: str, blocks: list[dict[str, Any]]) -> None:
        try:
            await self._client.chat_postMessage(channel=self._channel, text=text, blocks=blocks)
        except SlackApiError as exc:
            status = getattr(exc.response, "status_code", None)
            try:
                error = str(exc.response.get("error") or "unknown_error")[:80]
            except Exception:  # a non-JSON answer has no .get
                error = "unreadable answer"
            # "from None": the SDK's own message holds the whole answer; ours is enough.
            raise SlackSendError(f"Slack API answered HTTP {status}: {error}") from None
