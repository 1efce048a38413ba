"""A simulated SMS sender: messages through the simulator's ``/sms/json``, answers forwarded.

What a real sender does with the guard as a sidecar: send one message, read Vonage's answer, post
that raw answer to the guard's ``/v1/signals/sms`` (with ``?at=`` = when it arrived), and move on.
Used by the demo and by tests that check the guard's reaction "within one message". The rate is
steady or changes in ``steps`` (a campaign burst: ``[(3.0, 50.0), (9.0, 5.0)]`` is 50 messages a
second from 3 s to 9 s after the start). The pace does not drift (each message is due one interval
after the previous one was *due*, and the first message of a step is due at its start); a late
message is sent at once, never skipped.

Forwarding here is awaited with a 100 ms timeout instead of going through the
``topup_guard.signals`` thread, so a test on a virtual pace sees every forward in order; its
failures are counted, never raised, exactly like the helper's.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation

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


@dataclass(frozen=True, slots=True)
class Answer:
    """One message's answer, as the sender read it (for ``on_answer`` observers)."""

    index: int  # 0 for the first message of the run
    at: float  # wall time it arrived
    status: str | None  # the first entry's status ("0" sent, "9" out of credit); None: unreadable
    balance: Decimal | None  # its remaining-balance, when the answer carries one


class SimSender:
    """Sends ``rate`` messages a second (or as ``steps`` say) until ``run``'s stop is set."""

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
        steps: Sequence[tuple[float, float]] = (),
        on_answer: Callable[[Answer], None] | None = None,
    ) -> None:
        if not rate > 0 or not all(r > 0 for _, r in steps):
            raise ValueError("rate must be positive")
        if [t for t, _ in steps] != sorted({t for t, _ in steps}) or any(t <= 0 for t, _ in steps):
            raise ValueError("steps must start after 0 s, in increasing order")
        self._sms = sim_url.rstrip("/") + "/sms/json"
        self._auth = basic_authorization(api_key, api_secret)
        self._forward = signal_url.rstrip("/") + "/v1/signals/sms" if signal_url else None
        self._token, self._text, self._wall = token, text, wall
        self.rate = rate
        self.steps = tuple(steps)
        self._on_answer = on_answer
        self.stats = SenderStats()

    def __repr__(self) -> str:  # no credentials
        return f"SimSender(rate={self.rate}, forward={self._forward is not None})"

    async def run(self, stop: asyncio.Event, count: int | None = None) -> SenderStats:
        """Send until ``stop`` is set (or ``count`` messages are sent)."""
        loop = asyncio.get_running_loop()
        start = due = loop.time()
        timeout = aiohttp.ClientTimeout(total=5)
        async with aiohttp.ClientSession(timeout=timeout) as http:
            i = 0
            while not stop.is_set() and (count is None or i < count):
                delay = due - loop.time()
                if delay > 0:
                    try:
                        await asyncio.wait_for(stop.wait(), delay)
                        break
                    except TimeoutError:
                        pass
                await self._send_one(http, i)
                i += 1
                due = start + self.next_due(due - start)
        return self.stats

    def rate_at(self, elapsed: float) -> float:
        """Messages a second ``elapsed`` seconds after the start."""
        rate = self.rate
        for t, r in self.steps:
            if elapsed >= t:
                rate = r
        return rate

    def next_due(self, due: float) -> float:
        """When (seconds after the start) the message after the one due at ``due`` is due."""
        following = due + 1 / self.rate_at(due)
        step = next((t for t, _ in self.steps if t > due), None)
        return following if step is None else min(following, step)

    async def _send_one(self, http: aiohttp.ClientSession, index: int) -> None:
        form = {"from": "AcmeInc", "to": "447700900000", "text": self._text}
        async with http.post(self._sms, data=form, headers={"Authorization": self._auth}) as got:
            raw = await got.read()
            ok = got.status == 200
        arrived = self._wall()
        self.stats.sent += 1
        status, balance = _first_entry(raw) if ok else (None, None)
        if status == "0":
            self.stats.accepted += 1
        elif status == "9":
            self.stats.refused += 1
            self.stats.refused_at.append(arrived)
        else:
            self.stats.other += 1
        if self._forward is not None and ok:
            await self._forward_answer(http, self._forward, raw, arrived)
        if self._on_answer is not None:
            self._on_answer(Answer(index, arrived, status, balance))

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


def _first_entry(raw: bytes) -> tuple[str | None, Decimal | None]:
    """The first message's status and remaining-balance, as far as the answer is readable."""
    try:
        first = (json.loads(raw).get("messages") or [])[0]
        status = str(first.get("status"))
    except (ValueError, AttributeError, IndexError, TypeError):
        return None, None
    try:
        return status, Decimal(str(first["remaining-balance"]))
    except (KeyError, InvalidOperation, TypeError):
        return status, None


__all__ = ["Answer", "SenderStats", "SimSender"]
