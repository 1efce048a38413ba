"""A local stand-in for Slack over a real socket: an incoming webhook and ``chat.postMessage``.

It answers as Slack does (webhook: ``200 ok``; Web API: ``{"ok": true, ...}``) and keeps every
request's raw body and headers, so tests can read the messages and search every byte for secrets.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from aiohttp import web

WEBHOOK_PATH = "/services/T/B/X"


@dataclass(frozen=True, slots=True)
class Post:
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.body)
        return data

    @property
    def text(self) -> str:
        return str(self.json.get("text", ""))

    @property
    def scope(self) -> str:
        """The ``[environment · account]`` every message starts with, without the brackets."""
        return self.text[1:].split("] ", 1)[0] if self.text.startswith("[") else ""

    @property
    def said(self) -> str:
        """The text after the scope prefix: what the message says."""
        return self.text.split("] ", 1)[1] if self.scope else self.text


class SlackReceiver:
    """Serves ``webhook_path`` and ``/api/chat.postMessage`` on 127.0.0.1 (free port)."""

    def __init__(self, webhook_path: str = WEBHOOK_PATH) -> None:
        self.webhook_path = webhook_path
        self.posts: list[Post] = []
        self.port = 0
        self._runner: web.AppRunner | None = None

    @property
    def webhook_url(self) -> str:
        return f"http://127.0.0.1:{self.port}{self.webhook_path}"

    @property
    def api_url(self) -> str:
        """The Web API base URL (slack-sdk appends the method name)."""
        return f"http://127.0.0.1:{self.port}/api/"

    async def _record(self, request: web.Request) -> Post:
        post = Post(request.path, dict(request.headers), await request.read())
        self.posts.append(post)
        return post

    async def _webhook(self, request: web.Request) -> web.Response:
        await self._record(request)
        return web.Response(text="ok")

    async def _post_message(self, request: web.Request) -> web.Response:
        post = await self._record(request)
        channel = post.json.get("channel", "C0")
        return web.json_response({"ok": True, "channel": channel, "ts": f"{len(self.posts)}.0"})

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post(self.webhook_path, self._webhook)
        app.router.add_post("/api/chat.postMessage", self._post_message)
        self._runner = web.AppRunner(app, shutdown_timeout=0.2)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self.port = self._runner.addresses[0][1]

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def texts(self) -> list[str]:
        return [p.text for p in self.posts]

    def find(self, prefix: str) -> list[Post]:
        """Posts whose text (after the scope prefix) starts with ``prefix``."""
        return [p for p in self.posts if p.said.startswith(prefix)]
