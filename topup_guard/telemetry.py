"""OpenTelemetry for the guard: traces and metrics, redacted before export, never blocking the loop.

``setup_telemetry()`` builds one ``Telemetry`` from the standard ``OTEL_*`` variables (see
``otelenv``). Exports run on the SDK's own threads (``BatchSpanProcessor``,
``PeriodicExportingMetricReader``) with bounded timeouts: a collector that is down or slow costs
a log line, never a delayed top-up. Metrics are also collected on demand for ``/metrics``.

**Getting a tracer.** Prefer passing ``telemetry.tracer`` to the engine. For code that calls
``trace.get_tracer("topup_guard")`` itself, the first ``setup_telemetry`` installs a *switchable*
global provider (OpenTelemetry lets the global be set only once per process); every later
``Telemetry`` re-points it, and ``shutdown()`` points it back to no-op. So tests may build one
``Telemetry`` after another and each sees its own spans. If something else (e.g.
``opentelemetry-instrument``) set the global first, only ``telemetry.tracer`` reaches our exporters.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Protocol

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.metrics import NoOpMeterProvider
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    InMemoryMetricReader,
    MetricReader,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event as SpanEvent
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.trace import NoOpTracer, Status, Tracer
from opentelemetry.util._decorator import _agnosticcontextmanager

from topup_guard import promtext, redact
from topup_guard.events import Event, EventSink
from topup_guard.metrics import Instruments
from topup_guard.otelenv import OtelEnv, SignalExport, parse_otel_env
from topup_guard.signals.metrics import SignalInstruments

log = logging.getLogger("topup_guard.telemetry")
TRACER_NAME = "topup_guard"


class CallLike(Protocol):
    """What ``observe_call`` reads from ``topup_guard.vonage.client.CallRecord`` (read-only)."""

    @property
    def endpoint(self) -> str: ...
    @property
    def method(self) -> str: ...
    @property
    def status(self) -> int | None: ...
    @property
    def outcome(self) -> str: ...
    @property
    def duration_s(self) -> float: ...


# --- redaction before export --------------------------------------------------------------------
def scrub_attributes(attributes: Mapping[str, Any] | None) -> dict[str, Any]:
    return {k: redact.scrub_value(k, v) for k, v in (attributes or {}).items()}


class RedactingSpanProcessor(SpanProcessor):
    """Hands a scrubbed copy of each ended span to the export processors behind it."""

    def __init__(self, delegates: Sequence[SpanProcessor]) -> None:
        self._delegates = list(delegates)

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        for d in self._delegates:
            d.on_start(span, parent_context)

    def on_end(self, span: ReadableSpan) -> None:
        clean = redact_span(span)
        for d in self._delegates:
            d.on_end(clean)

    def shutdown(self) -> None:
        for d in self._delegates:
            d.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        results = [d.force_flush(timeout_millis) for d in self._delegates]  # flush every one
        return all(results)


def redact_span(span: ReadableSpan) -> ReadableSpan:
    """A copy of ``span`` with secret-looking attributes masked and URL queries dropped."""
    events = [SpanEvent(e.name, scrub_attributes(e.attributes), e.timestamp) for e in span.events]
    status = span.status
    if status.description:
        status = Status(status.status_code, redact.scrub_text(status.description))
    return ReadableSpan(
        name=span.name,
        context=span.context,
        parent=span.parent,
        resource=span.resource,
        attributes=scrub_attributes(span.attributes),
        events=events,
        links=span.links,
        kind=span.kind,
        status=status,
        start_time=span.start_time,
        end_time=span.end_time,
        instrumentation_scope=span.instrumentation_scope,
    )


# --- the switchable global provider -------------------------------------------------------------
class _SwitchTracer(Tracer):
    """Resolves the current ``Telemetry``'s provider at each span, like the API's ProxyTracer."""

    def __init__(self, switch: _SwitchProvider, args: tuple[Any, ...]) -> None:
        self._switch, self._args = switch, args
        self._cached: tuple[object, Tracer] | None = None

    @property
    def _tracer(self) -> Tracer:
        current = self._switch.current
        if current is None:
            return NoOpTracer()
        if self._cached is None or self._cached[0] is not current:
            self._cached = (current, current.get_tracer(*self._args))
        return self._cached[1]

    def start_span(self, *args: Any, **kwargs: Any) -> trace.Span:
        return self._tracer.start_span(*args, **kwargs)

    @_agnosticcontextmanager
    def start_as_current_span(self, *args: Any, **kwargs: Any) -> Iterator[trace.Span]:
        with self._tracer.start_as_current_span(*args, **kwargs) as span:
            yield span


class _SwitchProvider(trace.TracerProvider):
    def __init__(self) -> None:
        self.current: TracerProvider | None = None

    def get_tracer(self, *args: Any, **kwargs: Any) -> Tracer:
        return _SwitchTracer(self, args)


_SWITCH = _SwitchProvider()


def _install_global(provider: TracerProvider) -> bool:
    if not isinstance(trace.get_tracer_provider(), _SwitchProvider):
        trace.set_tracer_provider(_SWITCH)  # no-op (with a warning) if someone else was first
    if trace.get_tracer_provider() is not _SWITCH:
        log.warning("otel_global_provider_taken")
        return False
    _SWITCH.current = provider
    return True


# --- the Telemetry object -----------------------------------------------------------------------
class Telemetry:
    """Providers, instruments and the event sink. Build with ``setup_telemetry``."""

    def __init__(
        self,
        *,
        env: OtelEnv,
        tracer_provider: TracerProvider | None,
        meter_provider: MeterProvider | None,
        pull_reader: InMemoryMetricReader | None,
    ) -> None:
        self.env = env
        self.tracer_provider = tracer_provider
        self.meter_provider = meter_provider
        self._pull = pull_reader
        self._closed = False
        self.tracer: Tracer = (
            tracer_provider.get_tracer(TRACER_NAME) if tracer_provider else NoOpTracer()
        )
        meter = (meter_provider or NoOpMeterProvider()).get_meter(TRACER_NAME)
        self.instruments = Instruments(meter)
        self.signals = SignalInstruments(meter)  # the sender signal server's (signals/)
        self.sink: EventSink = _MetricsSink(self.instruments)

    @property
    def enabled(self) -> bool:
        return not self.env.disabled

    def describe(self) -> dict[str, str]:
        """Where telemetry goes, for the start-up log (no headers: they may hold API keys)."""
        traces, metrics = self.env.traces, self.env.metrics
        return {
            "otel": "disabled" if self.env.disabled else "enabled",
            "service_name": self.env.service_name,
            "traces_endpoint": redact.strip_url(traces.endpoint) if traces else "(none)",
            "metrics_endpoint": redact.strip_url(metrics.endpoint) if metrics else "(none)",
        }

    def observe_call(self, record: CallLike) -> None:
        """Count one Vonage API call (the client's ``observer``)."""
        self.instruments.api_call(
            record.endpoint, record.method, record.status, record.outcome, record.duration_s
        )

    def count_notification(self, channel: str, result: str) -> None:
        """Count one message by ``channel`` (slack | webhook | pagerduty) and ``result``
        (sent | dropped | failed). Slack's also still count in ``slack_messages``."""
        self.instruments.notifications.add(1, {"channel": channel, "result": result})
        if channel == "slack":
            self.instruments.slack_messages.add(1, {"result": result})

    def count_slack(self, result: str) -> None:
        """Count one Slack message by ``result``: sent | dropped | failed."""
        self.count_notification("slack", result)

    def render_prometheus(self) -> str:
        """The current metrics in Prometheus text format 0.0.4 ("" when disabled)."""
        if self._pull is None or self._closed:
            return ""
        try:
            return promtext.render(self._pull.get_metrics_data())
        except Exception:  # /metrics must never take the guard down
            log.exception("metrics_render_failed")
            return ""

    def force_flush(self, timeout: float = 5.0) -> bool:
        """Push finished spans and current metrics to the exporters (blocking, bounded)."""
        millis = int(timeout * 1000)
        ok = True
        if self.tracer_provider is not None:
            ok = self.tracer_provider.force_flush(millis) and ok
        if self.meter_provider is not None:
            ok = self.meter_provider.force_flush(millis) and ok
        return ok

    def shutdown(self, timeout: float = 5.0) -> None:
        """Flush and stop exporters within ``timeout`` seconds, whatever the collector does."""
        if self._closed:
            return
        self._closed = True
        if _SWITCH.current is self.tracer_provider:
            _SWITCH.current = None

        def close() -> None:
            if self.tracer_provider is not None:
                self.tracer_provider.shutdown()
            if self.meter_provider is not None:
                self.meter_provider.shutdown(timeout_millis=timeout * 1000)

        worker = threading.Thread(target=close, name="otel-shutdown", daemon=True)
        worker.start()
        worker.join(timeout)
        if worker.is_alive():
            log.warning("telemetry_shutdown_timeout", extra={"timeout_s": timeout})

    async def aclose(self, grace: float = 5.0) -> None:
        """``shutdown`` off the event loop thread, so other tasks keep running meanwhile."""
        await asyncio.to_thread(self.shutdown, grace)


class _MetricsSink:
    """Updates the instruments from engine events; cheap enough to run inline."""

    def __init__(self, instruments: Instruments) -> None:
        self._instruments = instruments

    def emit(self, event: Event) -> None:
        self._instruments.record_event(event)


# --- construction -------------------------------------------------------------------------------
# The OTLP exporters (protobuf, requests) are imported only when an endpoint is configured.
def _otlp_spans(cfg: SignalExport) -> SpanExporter:
    from opentelemetry.exporter.otlp.proto.http import Compression
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    return OTLPSpanExporter(
        endpoint=cfg.endpoint,
        headers=cfg.headers,
        timeout=cfg.timeout_s,
        compression=Compression(cfg.compression),
    )


def _otlp_metrics(cfg: SignalExport, interval_s: float) -> MetricReader:
    from opentelemetry.exporter.otlp.proto.http import Compression
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter

    exporter = OTLPMetricExporter(
        endpoint=cfg.endpoint,
        headers=cfg.headers,
        timeout=cfg.timeout_s,
        compression=Compression(cfg.compression),
    )
    return PeriodicExportingMetricReader(
        exporter,
        export_interval_millis=interval_s * 1000,
        export_timeout_millis=cfg.timeout_s * 1000,
    )


def setup_telemetry(
    *,
    service_name: str = "topup-guard",
    environ: Mapping[str, str] = os.environ,
    span_exporter: SpanExporter | None = None,
    metric_readers: Sequence[MetricReader] | None = None,
    install_global: bool = True,
) -> Telemetry:
    """Build telemetry from ``OTEL_*`` in ``environ``; never raises for a bad telemetry setting.

    ``span_exporter`` / ``metric_readers`` are extra destinations (tests: in-memory), used next
    to any OTLP exporter; spans to an injected exporter are batched too, so call
    ``force_flush()`` before looking. Call ``shutdown()`` (or ``await aclose()``) at exit.
    """
    env = parse_otel_env(environ, service_name)
    for problem in env.problems:
        log.warning("otel_setting_ignored", extra={"problem": problem})
    if env.disabled:
        return Telemetry(env=env, tracer_provider=None, meter_provider=None, pull_reader=None)
    for cfg in (env.traces, env.metrics):
        for value in cfg.headers.values() if cfg else ():
            redact.register_secret(value)
    resource = Resource.create({**env.resource_attributes, "service.name": env.service_name})

    exporters: list[SpanExporter] = [_otlp_spans(env.traces)] if env.traces else []
    if span_exporter is not None:
        exporters.append(span_exporter)
    # No destination for spans: a no-op tracer, so every poll does not build spans for nobody.
    tracer_provider = (
        TracerProvider(resource=resource, shutdown_on_exit=False) if exporters else None
    )
    if tracer_provider is not None:
        batchers = [
            BatchSpanProcessor(
                e,
                schedule_delay_millis=env.span_delay_s * 1000,
                export_timeout_millis=(env.traces.timeout_s if env.traces else 5.0) * 1000,
            )
            for e in exporters
        ]
        tracer_provider.add_span_processor(RedactingSpanProcessor(batchers))

    pull = InMemoryMetricReader()
    readers: list[MetricReader] = [pull, *(metric_readers or ())]
    if env.metrics:
        readers.append(_otlp_metrics(env.metrics, env.metric_interval_s))
    meter_provider = MeterProvider(
        metric_readers=readers, resource=resource, shutdown_on_exit=False
    )
    if install_global and tracer_provider is not None:
        _install_global(tracer_provider)
    return Telemetry(
        env=env, tracer_provider=tracer_provider, meter_provider=meter_provider, pull_reader=pull
    )


__all__ = ["CallLike", "RedactingSpanProcessor", "Telemetry", "redact_span", "setup_telemetry"]
