"""A generic webhook: every note POSTed as one JSON object, optionally signed with HMAC-SHA256.

The signature is ``X-Topup-Guard-Signature-256: sha256=<hex>`` over the exact body bytes, keyed by
``TOPUP_GUARD_WEBHOOK_SECRET``; a receiver recomputes it over the raw body and compares in constant
time. The body's ``id`` is unique per note (a resend after a lost answer carries the same one) and
``sent_at`` lets a receiver refuse old replays.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import uuid
from typing import Any

from topup_guard.notify.channels.http import JsonPoster
from topup_guard.notify.note import Note

SIGNATURE_HEADER = "X-Topup-Guard-Signature-256"
SCHEMA_VERSION = 1


def payload(note: Note, *, note_id: str, sent_at: float) -> dict[str, Any]:
    """The JSON document for ``note`` (schema version 1; fields are only ever added)."""
    ref = note.incident
    return {
        "version": SCHEMA_VERSION,
        "id": note_id,
        "kind": note.kind,
        "severity": note.severity.value,
        "title": note.title,
        "text": note.text,
        "summary": note.summary,
        "account": note.scope.account,
        "account_name": note.scope.account_name,
        "environment": note.scope.environment,
        "event_time": note.wall or None,
        "sent_at": sent_at,
        "paragraphs": [{"label": p.label, "text": p.text} for p in note.paragraphs],
        "fields": dict(note.fields),
        "footer": [line for line in note.footer if line],
        "incident": None
        if ref is None
        else {
            "key": ref.key,
            "action": ref.action.value,
            "conditions": [c.value for c in ref.conditions],
            "replaces": list(ref.replaces),
        },
    }


def sign(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class WebhookChannel:
    name = "webhook"

    def __init__(self, url: str, secret: str | None = None, *, request_timeout: float = 10.0):
        self._poster = JsonPoster(self.name, url, request_timeout=request_timeout)
        self._secret = secret or None
        self.secrets = tuple(s for s in (url, secret) if s)

    def accepts(self, note: Note) -> bool:
        return True

    async def send(self, note: Note) -> None:
        doc = payload(note, note_id=str(uuid.uuid4()), sent_at=time.time())
        body = json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode()
        headers = {SIGNATURE_HEADER: sign(self._secret, body)} if self._secret else {}
        await self._poster.post(body, headers)

    async def aclose(self) -> None:
        await self._poster.aclose()
