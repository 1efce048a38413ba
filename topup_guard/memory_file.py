"""Burst memory kept across restarts: a small JSON file beside the ledger, written atomically.

Losing it costs only foresight (the next days relearn it), so every error here is logged and
swallowed: it can never stop the guard or a top-up.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from topup_guard.policy.memory import BurstMemory

log = logging.getLogger("topup_guard.memory")


class MemoryFile:
    def __init__(self, path: Path) -> None:
        self.path = path

    @classmethod
    def beside(cls, ledger_path: Path) -> MemoryFile | None:
        """The file next to a SQLite ledger (None for an in-memory one)."""
        if str(ledger_path) == ":memory:":
            return None
        return cls(ledger_path.with_name(ledger_path.name + ".bursts.json"))

    def load(self) -> BurstMemory:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return BurstMemory()
        except (OSError, ValueError) as exc:
            log.warning("burst_memory_unreadable", extra={"path": str(self.path),
                                                          "error": str(exc)})  # fmt: skip
            return BurstMemory()
        return BurstMemory.from_dict(data) if isinstance(data, dict) else BurstMemory()

    def save(self, memory: BurstMemory) -> None:
        tmp = self.path.with_name(self.path.name + ".tmp")
        try:
            tmp.write_text(json.dumps(memory.to_dict()), encoding="utf-8")
            os.replace(tmp, self.path)
        except OSError as exc:
            log.warning("burst_memory_not_saved", extra={"path": str(self.path),
                                                         "error": str(exc)})  # fmt: skip
