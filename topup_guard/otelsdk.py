"""What needs the OpenTelemetry SDK: span redaction and batching, metric readers, OTLP exporters.

Imported only when something is exported (an OTLP endpoint, or an exporter or reader a test
injects): the SDK is 2-3 MB and some startup time that a guard without a collector does not need.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from opentelemetry.context import Context
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import MetricReader, PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event as SpanEvent
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.trace import Status

from topup_guard import redact
from topup_guard.otelenv import OtelEnv, SignalExport


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


# The OTLP exporters (protobuf, requests) are imported only when an endpoint is configured.
def otlp_spans(cfg: SignalExport) -> SpanExporter:
    from opentelemetry.exporter.otlp.proto.http import Compression
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    return OTLPSpanExporter(
        endpoint=cfg.endpoint,
        headers=cfg.headers,
        timeout=cfg.timeout_s,
        compression=Compression(cfg.compression),
    )


def tracer_provider(
    env: OtelEnv, resource: Resource, extra: SpanExporter | None
) -> TracerProvider | None:
    """A provider batching redacted spans to OTLP and/or ``extra``; None with neither."""
    exporters: list[SpanExporter] = [otlp_spans(env.traces)] if env.traces else []
    if extra is not None:
        exporters.append(extra)
    if not exporters:
        return None
    provider = TracerProvider(resource=resource, shutdown_on_exit=False)
    batchers = [
        BatchSpanProcessor(
            e,
            schedule_delay_millis=env.span_delay_s * 1000,
            export_timeout_millis=(env.traces.timeout_s if env.traces else 5.0) * 1000,
        )
        for e in exporters
    ]
    provider.add_span_processor(RedactingSpanProcessor(batchers))
    return provider


def otlp_metrics(cfg: SignalExport, interval_s: float) -> MetricReader:
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


def meter_provider(
    env: OtelEnv, resource: Resource, extra: Sequence[MetricReader]
) -> MeterProvider | None:
    """A provider for the OTLP metrics endpoint and/or ``extra`` readers; None with neither."""
    readers = list(extra)
    if env.metrics:
        readers.append(otlp_metrics(env.metrics, env.metric_interval_s))
    if not readers:
        return None
    return MeterProvider(metric_readers=readers, resource=resource, shutdown_on_exit=False)


def make_resource(env: OtelEnv) -> Resource:
    return Resource.create({**env.resource_attributes, "service.name": env.service_name})
