"""Who may spend. One guard alone (SQLite) always may; with Redis, only the lease holder.

The engine asks ``may_spend()`` right before it writes PENDING, and writes the ``epoch`` into every
ledger entry; a shared ledger refuses a stale epoch (fencing), so a deposed holder never sends.
"""

from __future__ import annotations

import os
import socket
from typing import Protocol


def default_holder_id() -> str:
    """A name for this replica in the ledger and the lease: host name and process id."""
    return f"{socket.gethostname()}:{os.getpid()}"


class Coordinator(Protocol):
    @property
    def holder(self) -> str: ...

    @property
    def epoch(self) -> int: ...

    def may_spend(self) -> bool:
        """True only while this replica holds a freshly renewed lease."""

    @property
    def healthy(self) -> bool:
        """False when the shared store is unreachable (then nobody spends)."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


class SoleGuard:
    """No coordination: this process is the only guard of the account (the SQLite default)."""

    def __init__(self, holder: str | None = None) -> None:
        self._holder = holder or default_holder_id()

    @property
    def holder(self) -> str:
        return self._holder

    @property
    def epoch(self) -> int:
        return 0

    def may_spend(self) -> bool:
        return True

    @property
    def healthy(self) -> bool:
        return True

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None
