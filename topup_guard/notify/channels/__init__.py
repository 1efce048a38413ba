"""Where notes go. Each channel renders a ``Note`` in its own format and sends it, or raises
``NotificationError``; queueing, retries of whole messages, drops and counting are the
dispatcher's (``notify.outbox``), so a channel is only its format and its one HTTP exchange.
"""

from __future__ import annotations

from typing import Protocol

from topup_guard.notify.note import Note


class Channel(Protocol):
    @property
    def name(self) -> str:
        """Stable label for metrics and logs: slack | webhook | pagerduty."""

    @property
    def secrets(self) -> tuple[str, ...]:
        """Values to scrub from any error text before it is logged."""

    def accepts(self, note: Note) -> bool:
        """Whether this channel takes ``note`` at all (PagerDuty takes incidents only)."""

    async def send(self, note: Note) -> None:
        """Deliver one note or raise (``NotificationError``, or a connection error)."""

    async def aclose(self) -> None:
        """Release connections; called once, at stop."""
