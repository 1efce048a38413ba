"""Local stand-ins over real sockets: a webhook receiver that checks the HMAC signature as a real
one would, and a PagerDuty Events API v2 endpoint that keeps incidents open and resolved by key.

Both keep every request's raw body and headers, so tests can read them and search every byte
for secrets. ``fail_next`` makes the next N requests answer 503 (to exercise resends).
"""

from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from topup_guard.notify.channels.webhook import SIGNATURE_HEADER


@dataclass(frozen=True, slots=True)
class Request:
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.body)
        return data


class _Server:
    path = "/"

    def __init__(self) -> None:
        self.requests: list[Request] = []
        self.fail_next = 0
        self.port = 0
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{self.path}"

    async def _handle(self, request: web.Request) -> web.Response:
        got = Request(request.path, dict(request.headers), await request.read())
        self.requests.append(got)
        if self.fail_next > 0:
            self.fail_next -= 1
            return web.Response(status=503, text="try later")
        return self.answer(got)

    def answer(self, request: Request) -> web.Response:
        raise NotImplementedError

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post(self.path, self._handle)
        self._runner = web.AppRunner(app, shutdown_timeout=0.2, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self.port = self._runner.addresses[0][1]

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


class WebhookReceiver(_Server):
    """Accepts a body only with a valid ``sha256=`` HMAC of its raw bytes (401 otherwise)."""

    path = "/hooks/topup"

    def __init__(self, secret: str | None) -> None:
        super().__init__()
        self.secret = secret
        self.accepted: list[dict[str, Any]] = []

    def signature_ok(self, request: Request) -> bool:
        if self.secret is None:
            return True
        expected = (
            "sha256=" + hmac.new(self.secret.encode(), request.body, hashlib.sha256).hexdigest()
        )
        return hmac.compare_digest(request.headers.get(SIGNATURE_HEADER, ""), expected)

    def answer(self, request: Request) -> web.Response:
        if not self.signature_ok(request):
            return web.Response(status=401, text="bad signature")
        self.accepted.append(request.json)
        return web.Response(status=204)


class FakePagerDuty(_Server):
    """Events API v2: 202 for a valid event, 400 for an invalid one; tracks open dedup keys."""

    path = "/v2/enqueue"

    def __init__(self, routing_key: str) -> None:
        super().__init__()
        self.routing_key = routing_key
        self.events: list[dict[str, Any]] = []
        self.open: dict[str, dict[str, Any]] = {}  # dedup_key -> latest trigger
        self.resolved: list[str] = []

    def answer(self, request: Request) -> web.Response:
        event = request.json
        action, key = event.get("event_action"), event.get("dedup_key")
        payload = event.get("payload") or {}
        valid = (
            event.get("routing_key") == self.routing_key
            and action in ("trigger", "acknowledge", "resolve")
            and isinstance(key, str)
            and len(key) <= 255
            and (
                action != "trigger"
                or (
                    0 < len(payload.get("summary", "")) <= 1024
                    and payload.get("source")
                    and payload.get("severity") in ("critical", "error", "warning", "info")
                )
            )
        )
        if not valid:
            return web.json_response({"status": "invalid event"}, status=400)
        self.events.append(event)
        if action == "trigger":
            self.open[key] = event
        elif action == "resolve" and self.open.pop(key, None) is not None:
            self.resolved.append(key)
        return web.json_response(
            {"status": "success", "message": "Event processed", "dedup_key": key}, status=202
        )
