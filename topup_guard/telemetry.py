"""OpenTelemetry for the guard: traces and metrics, redacted before export, never blocking the loop.

``setup_telemetry()`` builds one ``Telemetry`` from the standard ``OTEL_*`` variables (see
``otelenv``). Exports run on the SDK's own threads (``BatchSpanProcessor``,
``PeriodicExportingMetricReader``) with bounded timeouts: a collector that is down or slow costs
a log line, never a delayed top-up. Metrics live in the in-process ``LocalMeter``, which
``/metrics`` renders; the OpenTelemetry SDK (``otelsdk``) is imported only when something is
exported, and without a span destination the tracer is the ``NullTracer``.

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
from typing import TYPE_CHECKING, Any, Protocol

from opentelemetry import trace
from opentelemetry.metrics import Meter
from opentelemetry.trace import NoOpTracer, Tracer
from opentelemetry.util._decorator import _agnosticcontextmanager

from topup_guard import promtext, redact
from topup_guard.events import Event, EventSink
from topup_guard.meter import LocalMeter, TeeMeter
from topup_guard.metrics import Instruments
from topup_guard.otelenv import OtelEnv, parse_otel_env
from topup_guard.signals.metrics import SignalInstruments
from topup_guard.tracing import NullTracer

if TYPE_CHECKING:
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import MetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter

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
        local_meter: LocalMeter | None,
    ) -> None:
        self.env = env
        self.tracer_provider = tracer_provider
        self.meter_provider = meter_provider
        self._local = local_meter
        self._closed = False
        self.tracer: Tracer = (
            tracer_provider.get_tracer(TRACER_NAME) if tracer_provider else NullTracer()
        )
        meter: Meter = local_meter if local_meter is not None else _noop_meter()
        if local_meter is not None and meter_provider is not None:
            meter = TeeMeter(local_meter, meter_provider.get_meter(TRACER_NAME))
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
        if self._local is None or self._closed:
            return ""
        try:
            return promtext.render(self._local.collect())
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
def _noop_meter() -> Meter:
    from opentelemetry.metrics import NoOpMeter

    return NoOpMeter(TRACER_NAME)


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
        return Telemetry(env=env, tracer_provider=None, meter_provider=None, local_meter=None)
    for cfg in (env.traces, env.metrics):
        for value in cfg.headers.values() if cfg else ():
            redact.register_secret(value)
    tracer_provider = meter_provider = None
    if env.traces or span_exporter is not None or env.metrics or metric_readers:
        from topup_guard import otelsdk  # the SDK only when something is exported

        resource = otelsdk.make_resource(env)
        # No destination for spans: the null tracer, so no poll builds spans for nobody.
        tracer_provider = otelsdk.tracer_provider(env, resource, span_exporter)
        meter_provider = otelsdk.meter_provider(env, resource, metric_readers or ())
    if install_global and tracer_provider is not None:
        _install_global(tracer_provider)
    return Telemetry(
        env=env,
        tracer_provider=tracer_provider,
        meter_provider=meter_provider,
        local_meter=LocalMeter(TRACER_NAME),
    )


__all__ = ["CallLike", "Telemetry", "setup_telemetry"]
