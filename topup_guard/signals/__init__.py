"""The sender's own signal: balances and refusals the sender already has, forwarded to the guard.

For senders (stdlib only, importing this pulls in no aiohttp)::

    from topup_guard.signals import forward_sms_answer
    forward_sms_answer(raw_answer_body)   # returns at once, never raises

For the guard: ``inbox.SignalInbox`` (what the engine drains) and ``server.SignalServer`` (the
``/v1/signals/*`` endpoints, on asyncio streams), which are imported from their modules.
"""

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from topup_guard.signals.sender import (
        DEFAULT_URL,
        TIMEOUT_S,
        ForwardStats,
        forward_balance,
        forward_refusal,
        forward_sms_answer,
        stats,
    )

__all__ = [
    "DEFAULT_URL",
    "TIMEOUT_S",
    "ForwardStats",
    "forward_balance",
    "forward_refusal",
    "forward_sms_answer",
    "stats",
]


def __getattr__(name: str) -> Any:
    # The guard imports ``signals.inbox`` and ``signals.server`` only: the sender's thread,
    # queue and urllib opener load when a sender asks for them (PEP 562).
    if name in __all__:
        from topup_guard.signals import sender

        return getattr(sender, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
