"""The signal server's instruments: signals taken by kind, rejected by reason, queue depth.

| instrument                      | kind            | unit       | attributes                     |
|---------------------------------|-----------------|------------|--------------------------------|
| topup_guard.signals_received    | counter         | {signal}   | kind = sms / balance / refusal |
| topup_guard.signals_rejected    | counter         | {signal}   | reason (parse.REASONS)         |
| topup_guard.signal_queue_depth  | observable gauge| {signal}   |                                |

Label values come from fixed sets (the endpoint kinds and ``parse.REASONS``), never from a body,
so a flood of garbage cannot grow the number of series.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from opentelemetry.metrics import CallbackOptions, Meter, Observation

from topup_guard.signals.parse import REASONS, Reason

KINDS = ("sms", "balance", "refusal")


class SignalInstruments:
    """Created once per ``Telemetry`` (``telemetry.signals``); the server reports into it."""

    def __init__(self, meter: Meter) -> None:
        self.received = meter.create_counter(
            "topup_guard.signals_received",
            unit="{signal}",
            description="Sender signals accepted, by kind (sms, balance, refusal).",
        )
        self.rejected = meter.create_counter(
            "topup_guard.signals_rejected",
            unit="{signal}",
            description="Sender signals refused (nothing changed), by reason.",
        )
        self.depth_source: Callable[[], int] | None = None
        """Set by the running signal server; the gauge reads it at each collection."""
        self.queue_depth = meter.create_observable_gauge(
            "topup_guard.signal_queue_depth",
            callbacks=[self._observe_depth],
            unit="{signal}",
            description="Accepted signals waiting to be handed to the engine.",
        )

        # At 0 from the start, like every other counter: the first reject is an increase.
        for kind in KINDS:
            self.received.add(0, {"kind": kind})
        for reason in REASONS:
            self.rejected.add(0, {"reason": reason})

    def _observe_depth(self, options: CallbackOptions) -> Iterable[Observation]:
        source = self.depth_source
        return [Observation(source() if source is not None else 0)]

    def count_received(self, kind: str) -> None:
        self.received.add(1, {"kind": kind if kind in KINDS else "other"})

    def count_rejected(self, reason: Reason) -> None:
        self.rejected.add(1, {"reason": reason if reason in REASONS else "malformed"})


__all__ = ["KINDS", "SignalInstruments"]
