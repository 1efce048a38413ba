"""The channel-neutral message: what every channel renders (Slack blocks, webhook JSON, PagerDuty).

A ``Note`` holds plain text only; each channel escapes and lays it out in its own format. The
``Scope`` (account and environment) is in every note, because an alert that does not say which
account it is about cannot be acted on by someone who runs several.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from topup_guard.events import Condition

# Mounted into every pod that has a service account token.
NAMESPACE_FILE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


class Severity(StrEnum):
    """PagerDuty's four levels, used by every channel."""

    INFO = "info"
    WARNING = "warning"
    ERROR = "error"
    CRITICAL = "critical"


class IncidentAction(StrEnum):
    OPEN = "open"  # a cause appeared
    UPDATE = "update"  # its root cause changed, a new cause joined, or a cause recovered
    REPEAT = "repeat"  # still going: a reminder
    RESOLVED = "resolved"  # every condition of the group ended


@dataclass(frozen=True, slots=True)
class Scope:
    """Which account and environment a note is about. The API key is not a secret."""

    account: str
    account_name: str | None = None
    environment: str | None = None

    @property
    def label(self) -> str:
        """``'production · Acme SMS (abcd1234)'``; the parts that are known."""
        who = self.account or "unknown account"
        if self.account_name:
            who = f"{self.account_name} ({who})"
        return f"{self.environment} · {who}" if self.environment else who


def kubernetes_namespace(
    environ: Mapping[str, str] | None = None, path: Path = NAMESPACE_FILE
) -> str | None:
    """The pod's namespace (service account file, else ``POD_NAMESPACE``), or None outside one."""
    try:
        found = path.read_text(encoding="utf-8").strip()
    except OSError:
        found = ""
    if not found:
        found = (os.environ if environ is None else environ).get("POD_NAMESPACE", "").strip()
    return found or None


@dataclass(frozen=True, slots=True)
class Paragraph:
    text: str
    label: str | None = None  # a lead-in such as "What to do"


@dataclass(frozen=True, slots=True)
class IncidentRef:
    """The group of conditions a note is about. ``key`` is the root cause's condition name:
    stable across restarts, so PagerDuty de-duplicates a restarted guard's alert into the open
    incident. ``replaces`` holds earlier roots' keys when the root cause changed (or two groups
    merged): PagerDuty resolves those."""

    key: str
    action: IncidentAction
    conditions: tuple[Condition, ...]  # root first
    replaces: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Note:
    """One message. ``kind`` is a stable label for logs and metrics, never shown to people."""

    kind: str
    severity: Severity
    icon: str
    title: str
    summary: str  # the essentials in one paragraph: phones, screen readers, PagerDuty summary
    scope: Scope
    paragraphs: tuple[Paragraph, ...] = ()
    fields: tuple[tuple[str, str], ...] = ()
    footer: tuple[str, ...] = ()
    listing: str | None = None  # preformatted text (the settings at start)
    wall: float = 0.0
    incident: IncidentRef | None = None

    @property
    def text(self) -> str:
        """The summary prefixed by the scope: ``'[production · abcd1234] Topped up …'``."""
        return f"[{self.scope.label}] {self.summary}"
