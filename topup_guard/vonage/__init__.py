"""The only code that speaks to Vonage: :class:`VonageClient` and the records it reports."""

from topup_guard.vonage.client import CallRecord, VonageClient

__all__ = ["CallRecord", "VonageClient"]
