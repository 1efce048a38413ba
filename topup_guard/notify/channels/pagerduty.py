"""PagerDuty Events API v2: a group of conditions triggers an incident and resolves it.

Only incident notes go here (top-ups and start/stop are not pages). The ``dedup_key`` is the
account, the environment and the group's root condition, so a restarted guard's trigger joins the
open incident and its resolve closes it; re-triggering an open key (updates, reminders) only adds
to its log. When the root cause of a group changes, the old key is resolved and the new one
triggered. The routing key travels in the body, never in the URL.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from topup_guard.notify.channels.http import JsonPoster
from topup_guard.notify.note import IncidentAction, Note

EVENTS_URL = "https://events.pagerduty.com/v2/enqueue"
SUMMARY_MAX = 1024  # Events API v2 limit
DEDUP_KEY_MAX = 255


def dedup_key(note: Note, key: str) -> str:
    scope = note.scope
    return f"topup-guard/{scope.account}/{scope.environment or '-'}/{key}"[:DEDUP_KEY_MAX]


def event(note: Note, routing_key: str, action: str, key: str) -> dict[str, Any]:
    body: dict[str, Any] = {
        "routing_key": routing_key,
        "event_action": action,
        "dedup_key": dedup_key(note, key),
    }
    if action == "trigger":
        when = datetime.fromtimestamp(note.wall, tz=UTC) if note.wall > 0 else None
        body["client"] = "topup-guard"
        body["payload"] = {
            "summary": note.text[:SUMMARY_MAX],
            "source": f"topup-guard/{note.scope.account}",
            "severity": note.severity.value,
            "component": "vonage-balance",
            "group": note.scope.environment or "",
            "class": key,
            **({"timestamp": when.isoformat()} if when else {}),
            "custom_details": {
                "account": note.scope.account,
                "account_name": note.scope.account_name,
                "environment": note.scope.environment,
                "conditions": [c.value for c in note.incident.conditions] if note.incident else [],
                "details": [f"{p.label}: {p.text}" if p.label else p.text for p in note.paragraphs],
            },
        }
    return body


class PagerDutyChannel:
    name = "pagerduty"

    def __init__(self, routing_key: str, url: str = EVENTS_URL, *, request_timeout: float = 10.0):
        self._poster = JsonPoster(self.name, url, request_timeout=request_timeout)
        self._routing_key = routing_key
        self.secrets = (routing_key,)

    def accepts(self, note: Note) -> bool:
        return note.incident is not None

    def events(self, note: Note) -> list[dict[str, Any]]:
        ref = note.incident
        if ref is None:
            return []
        out = [event(note, self._routing_key, "resolve", old) for old in ref.replaces]
        action = "resolve" if ref.action is IncidentAction.RESOLVED else "trigger"
        out.append(event(note, self._routing_key, action, ref.key))
        return out

    async def send(self, note: Note) -> None:
        for body in self.events(note):
            await self._poster.post(json.dumps(body).encode(), {})

    async def aclose(self) -> None:
        await self._poster.aclose()
