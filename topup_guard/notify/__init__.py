"""Notifications: what the guard did and why, for the people who run it, on any channel.

```
engine events ──> Dispatcher (dedup, grouping by cause, throttling)
                     │  messages / incident_text: events -> Note (channel-neutral, pure)
                     ├─> Outbox ─> channels/slack.py      (Block Kit; slack-sdk)
                     ├─> Outbox ─> channels/webhook.py    (JSON, HMAC-SHA256 signature)
                     └─> Outbox ─> channels/pagerduty.py  (Events API v2, incidents only)
```
``build.build_dispatcher`` builds it from Settings; a channel's module (and slack_sdk) is
imported only when that channel is configured.
"""

from topup_guard.notify.dispatcher import Dispatcher
from topup_guard.notify.note import Note, Scope

__all__ = ["Dispatcher", "Note", "Scope"]
