"""A simulated SMS sender: messages through the simulator's ``/sms/json``, answers forwarded.

What a real sender does with the guard as a sidecar, at a steady rate: send one message, read
Vonage's answer, post that raw answer to the guard's ``/v1/signals/sms`` (with ``?at=`` = when it
arrived), and move on. Used by the demo and by tests that check the guard's reaction "within one
message". The pace does not drift (message ``i`` is due at ``start + i / rate``); a late message
is sent at once, never skipped.

Forwarding here is awaited with a 100 ms timeout instead of going through the
``topup_guard.signals`` thread, so a test on a virtual pace sees every forward in order; its
failures are counted, never raised, exactly like the helper's.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import aiohttp

from topup_guard.vonage.payloads import basic_authorization

FORWARD_TIMEOUT_S = 0.1


@dataclass
class SenderStats:
    """What the sender saw; ``refused_at`` holds the wall time of every status-9 answer."""

    sent: int = 0
    accepted: int = 0
    refused: int = 0
    other: int = 0
    forwarded: int = 0
    forward_failed: int = 0
    refused_at: list[float] = field(default_factory=list)


class SimSender:
    """Sends ``rate`` messages a second until ``run``'s stop event is set."""

    def __init__(
        self,
        sim_url: str,
        *,
        api_key: str,
        api_secret: str,
        rate: float,
        signal_url: str | None = None,
        token: str | None = None,
        text: str = "Your code is 1234",
        wall: Callable[[], float] = time.time,
    ) -> None:
        if not rate > 0:
            raise ValueError("rate must be positive")
        self._sms = sim_url.rstrip("/") + "/sms/json"
        self._auth = basic_authorization(api_key, api_secret)
        self._forward = signal_url.rstrip("/") + "/v1/signals/sms" if signal_url else None
        self._token, self._text, self._wall = token, text, wall
        self.rate = rate
        self.stats = SenderStats()

    def __repr__(self) -> str:  # no credentials
        return f"SimSender(rate={self.rate}, forward={self._forward is not None})"

    async def run(self, stop: asyncio.Event, count: int | None = None) -> SenderStats:
        """Send until ``stop`` is set (or ``count`` messages are sent)."""
        loop = asyncio.get_running_loop()
        start = loop.time()
        timeout = aiohttp.ClientTimeout(total=5)
        async with aiohttp.ClientSession(timeout=timeout) as http:
            i = 0
            while not stop.is_set() and (count is None or i < count):
                delay = start + i / self.rate - loop.time()
                if delay > 0:
                    try:
                        await asyncio.wait_for(stop.wait(), delay)
                        break
                    except TimeoutError:
                        pass
                await self._send_one(http)
                i += 1
        return self.stats

    async def _send_one(self, http: aiohttp.ClientSession) -> None:
        form = {"from": "AcmeInc", "to": "447700900000", "text": self._text}
        async with http.post(self._sms, data=form, headers={"Authorization": self._auth}) as got:
            raw = await got.read()
            ok = got.status == 200
        arrived = self._wall()
        self.stats.sent += 1
        status = _first_status(raw) if ok else None
        if status == "0":
            self.stats.accepted += 1
        elif status == "9":
            self.stats.refused += 1
            self.stats.refused_at.append(arrived)
        else:
            self.stats.other += 1
        if self._forward is not None and ok:
            await self._forward_answer(http, self._forward, raw, arrived)

    async def _forward_answer(
        self, http: aiohttp.ClientSession, url: str, raw: bytes, at: float
    ) -> None:
        headers = {"Content-Type": "application/json"}
        if self._token:
            headers["Authorization"] = f"Bearer {self._token}"
        try:
            async with http.post(
                url,
                data=raw,
                params={"at": f"{at:.3f}"},
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=FORWARD_TIMEOUT_S),
            ) as answer:
                await answer.read()
                if answer.status == 202:
                    self.stats.forwarded += 1
                else:
                    self.stats.forward_failed += 1
        except (aiohttp.ClientError, TimeoutError, OSError):
            self.stats.forward_failed += 1  # the guard being away never stops the sender


def _first_status(raw: bytes) -> str | None:
    try:
        messages = json.loads(raw).get("messages") or []
        return str(messages[0].get("status"))
    except (ValueError, AttributeError, IndexError, TypeError):
        return None


__all__ = ["SenderStats", "SimSender"]
