"""The standard ``OTEL_*`` variables, read from a mapping (not ``os.environ``) so tests can inject.

Only what the guard supports is honoured: OTLP over HTTP/protobuf (the gRPC exporter is not
installed). Deviations from the SDK's own defaults, on purpose:

- **Nothing configured means no OTLP exporter.** The spec's default (``otlp`` to localhost:4318)
  would make every guard without a collector log export errors forever. An exporter is built
  only when an endpoint is set, or ``OTEL_{TRACES,METRICS}_EXPORTER=otlp`` asks for the default.
- **Timeouts are milliseconds**, as the specification says (the Python exporter reads seconds),
  clamped to 0.5–30 s so that a slow collector can neither starve exports nor stall shutdown.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import unquote

DEFAULT_ENDPOINT = "http://localhost:4318"
DEFAULT_TIMEOUT_S = 5.0
_SUPPORTED = {"otlp", "none", "prometheus"}  # "prometheus": /metrics always serves, nothing to add


@dataclass(frozen=True, slots=True)
class SignalExport:
    """Where and how one signal (traces or metrics) is exported over OTLP/HTTP."""

    endpoint: str
    headers: dict[str, str] = field(repr=False)  # may hold collector API keys: never shown
    timeout_s: float
    compression: str  # "none" | "gzip" | "deflate"


@dataclass(frozen=True, slots=True)
class OtelEnv:
    disabled: bool
    service_name: str
    resource_attributes: dict[str, str]
    traces: SignalExport | None
    metrics: SignalExport | None
    metric_interval_s: float
    span_delay_s: float
    problems: tuple[str, ...]  # settings that were ignored, worth one warning at start


def _flag(value: str | None) -> bool:
    return (value or "").strip().lower() == "true"


def parse_pairs(value: str | None) -> dict[str, str]:
    """``k1=v1,k2=v2`` with percent-encoding (the W3C baggage style the spec uses)."""
    out: dict[str, str] = {}
    for item in (value or "").split(","):
        key, sep, val = item.partition("=")
        if sep and key.strip():
            out[unquote(key.strip())] = unquote(val.strip())
    return out


def _millis(
    environ: Mapping[str, str],
    names: tuple[str, ...],
    default_s: float,
    bounds: tuple[float, float] = (0.5, 30.0),
) -> float:
    """The first of ``names`` that is set, milliseconds → seconds, clamped to ``bounds``."""
    for name in names:
        raw = environ.get(name, "").strip()
        if raw:
            try:
                return min(bounds[1], max(bounds[0], float(raw) / 1000.0))
            except ValueError:
                break
    return default_s


def _signal(environ: Mapping[str, str], signal: str, problems: list[str]) -> SignalExport | None:
    upper = signal.upper()
    chosen = [
        n.strip().lower() for n in environ.get(f"OTEL_{upper}_EXPORTER", "").split(",") if n.strip()
    ]
    for name in chosen:
        if name not in _SUPPORTED:
            problems.append(f"OTEL_{upper}_EXPORTER={name} is not supported; ignored")
    if chosen and "otlp" not in chosen:
        return None  # "none" (or only unsupported/prometheus): no OTLP export for this signal
    specific = environ.get(f"OTEL_EXPORTER_OTLP_{upper}_ENDPOINT", "").strip()
    general = environ.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").strip()
    if specific:
        endpoint = specific
    elif general:
        endpoint = f"{general.rstrip('/')}/v1/{signal}"
    elif "otlp" in chosen:
        endpoint = f"{DEFAULT_ENDPOINT}/v1/{signal}"
    else:
        return None
    protocol = (
        environ.get(f"OTEL_EXPORTER_OTLP_{upper}_PROTOCOL")
        or environ.get("OTEL_EXPORTER_OTLP_PROTOCOL")
        or "http/protobuf"
    ).strip()
    if protocol != "http/protobuf":
        problems.append(f"OTLP protocol {protocol!r} for {signal} is not supported; not exported")
        return None
    headers = parse_pairs(
        environ.get(f"OTEL_EXPORTER_OTLP_{upper}_HEADERS")
        or environ.get("OTEL_EXPORTER_OTLP_HEADERS")
    )
    timeout = _millis(
        environ,
        (f"OTEL_EXPORTER_OTLP_{upper}_TIMEOUT", "OTEL_EXPORTER_OTLP_TIMEOUT"),
        DEFAULT_TIMEOUT_S,
    )
    compression = (
        (
            environ.get(f"OTEL_EXPORTER_OTLP_{upper}_COMPRESSION")
            or environ.get("OTEL_EXPORTER_OTLP_COMPRESSION")
            or "none"
        )
        .strip()
        .lower()
    )
    if compression not in ("none", "gzip", "deflate"):
        problems.append(f"OTLP compression {compression!r} is not supported; using none")
        compression = "none"
    return SignalExport(endpoint, headers, timeout, compression)


def parse_otel_env(environ: Mapping[str, str], default_service: str) -> OtelEnv:
    """Read the OTEL_* variables; never raises (a bad telemetry setting must not stop the guard)."""
    problems: list[str] = []
    attributes = parse_pairs(environ.get("OTEL_RESOURCE_ATTRIBUTES"))
    service = (
        environ.get("OTEL_SERVICE_NAME", "").strip()
        or attributes.get("service.name")
        or default_service
    )
    return OtelEnv(
        disabled=_flag(environ.get("OTEL_SDK_DISABLED")),
        service_name=service,
        resource_attributes=attributes,
        traces=_signal(environ, "traces", problems),
        metrics=_signal(environ, "metrics", problems),
        metric_interval_s=_millis(environ, ("OTEL_METRIC_EXPORT_INTERVAL",), 60.0, (1.0, 3600.0)),
        span_delay_s=_millis(environ, ("OTEL_BSP_SCHEDULE_DELAY",), 5.0, (0.05, 60.0)),
        problems=tuple(problems),
    )
