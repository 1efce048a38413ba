"""One JSON POST over aiohttp for the webhook and PagerDuty channels, resent by ``retry``.

A 2xx is delivered; 429, 5xx, a timeout or no connection is ``NotificationError(retryable=True)``
and is resent within ``retry.NOTIFY_POLICY`` (receivers de-duplicate); any other status, a
redirect included, is final.
Error texts name the channel and the status only: the URL may carry a token, and aiohttp's own
messages hold the URL, so they are never passed on.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

import aiohttp

from topup_guard import retry
from topup_guard.errors import NotificationError

_BODY_SHOWN = 120  # characters of a refusal's body kept for the log (receivers explain there)


class JsonPoster:
    def __init__(self, name: str, url: str, *, request_timeout: float = 10.0) -> None:
        self._name = name
        self._url = url
        self._timeout = aiohttp.ClientTimeout(total=request_timeout)
        self._session: aiohttp.ClientSession | None = None

    async def post(self, body: bytes, headers: Mapping[str, str]) -> None:
        async def once() -> None:
            await self._post_once(body, headers)

        await retry.call(
            once,
            name=f"notify.{self._name}",
            retryable=retry.notification_is_retryable,
            policy=retry.NOTIFY_POLICY,
            sleep=asyncio.sleep,
        )

    async def _post_once(self, body: bytes, headers: Mapping[str, str]) -> None:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout, trust_env=True)
        try:
            # No redirects: a redirected alert would carry its signature somewhere unconfigured.
            async with self._session.post(
                self._url,
                data=body,
                headers={"Content-Type": "application/json", **headers},
                allow_redirects=False,
            ) as resp:
                text = (await resp.text(errors="replace"))[:_BODY_SHOWN].strip()
                status = resp.status
        except (TimeoutError, aiohttp.ClientError) as exc:
            # "from None": aiohttp's message carries the URL.
            raise NotificationError(
                f"{self._name}: no answer ({type(exc).__name__})", retryable=True
            ) from None
        if 200 <= status < 300:
            return
        raise NotificationError(
            f"{self._name} answered HTTP {status}: {text}",
            retryable=status == 429 or status >= 500,
        )

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
