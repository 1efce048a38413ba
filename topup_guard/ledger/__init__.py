"""The ledger: the append-only audit trail of every top-up; caps and the breaker count it."""

from topup_guard.ledger.base import Attempt, AttemptState, FencedError, Ledger, LedgerBusyError
from topup_guard.ledger.sqlite import SqliteLedger

__all__ = ["Attempt", "AttemptState", "FencedError", "Ledger", "LedgerBusyError", "SqliteLedger"]
