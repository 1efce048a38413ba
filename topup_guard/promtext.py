"""OpenTelemetry metrics rendered as Prometheus text exposition format 0.0.4, for ``/metrics``.

A pull endpoint needs no collector: the health server asks an SDK ``MetricReader`` to collect and
renders the result here, so Prometheus and OTLP see the very same instruments. Naming follows the
OpenTelemetry-to-Prometheus compatibility rules: dots become underscores, the unit becomes a
suffix (``s`` → ``_seconds``, ``EUR/s`` → ``_eur_per_second``, ``{call}`` annotations dropped) and
monotonic sums end in ``_total``. No prometheus_client dependency.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping

from opentelemetry.sdk.metrics.export import Gauge, Histogram, Metric, MetricsData, Sum

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

_UNIT_WORDS = {
    "s": "seconds",
    "ms": "milliseconds",
    "min": "minutes",
    "h": "hours",
    "d": "days",
    "By": "bytes",
    "%": "percent",
}
_PER_WORDS = {"s": "second", "min": "minute", "h": "hour", "d": "day"}
_INVALID_NAME = re.compile(r"[^a-zA-Z0-9_:]")
_INVALID_LABEL = re.compile(r"[^a-zA-Z0-9_]")


def unit_suffix(unit: str) -> str:
    """The Prometheus name suffix for a UCUM-ish unit ("" for none or annotations only)."""
    unit = re.sub(r"\{[^}]*\}", "", unit).strip()
    if unit in ("", "1"):
        return ""
    if "/" in unit:
        num, _, per = unit.partition("/")
        head = unit_suffix(num)
        tail = _PER_WORDS.get(per, _INVALID_LABEL.sub("_", per).lower())
        return f"{head}_per_{tail}" if head else f"per_{tail}"
    return _UNIT_WORDS.get(unit, _INVALID_LABEL.sub("_", unit).lower())


def metric_name(name: str, unit: str, *, counter: bool) -> str:
    """``topup_guard.topped_up`` + ``EUR`` + counter → ``topup_guard_topped_up_eur_total``."""
    base = _INVALID_NAME.sub("_", name)
    if base[:1].isdigit():
        base = "_" + base
    suffix = unit_suffix(unit)
    if suffix and not base.endswith("_" + suffix):
        base = f"{base}_{suffix}"
    if counter and not base.endswith("_total"):
        base += "_total"
    return base


def format_value(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if float(value).is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(float(value))


def _escape_label(value: str) -> str:
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


def _labels(attributes: Mapping[str, object] | None, extra: Iterable[tuple[str, str]] = ()) -> str:
    pairs = [(_INVALID_LABEL.sub("_", str(k)), str(v)) for k, v in (attributes or {}).items()]
    pairs.extend(extra)
    if not pairs:
        return ""
    return "{" + ",".join(f'{k}="{_escape_label(v)}"' for k, v in sorted(pairs)) + "}"


def _render_metric(metric: Metric, out: dict[str, list[str]], headers: dict[str, str]) -> None:
    data = metric.data
    help_text = (metric.description or metric.name).replace("\\", r"\\").replace("\n", r"\n")
    if isinstance(data, Histogram):
        name = metric_name(metric.name, metric.unit or "", counter=False)
        headers.setdefault(name, f"# HELP {name} {help_text}\n# TYPE {name} histogram")
        lines = out.setdefault(name, [])
        for hp in data.data_points:
            attrs = dict(hp.attributes or {})
            cumulative = 0
            for bound, count in zip(hp.explicit_bounds, hp.bucket_counts, strict=False):
                cumulative += count
                le = (("le", format_value(float(bound))),)
                lines.append(f"{name}_bucket{_labels(attrs, le)} {cumulative}")
            lines.append(f"{name}_bucket{_labels(attrs, (('le', '+Inf'),))} {hp.count}")
            lines.append(f"{name}_sum{_labels(attrs)} {format_value(float(hp.sum))}")
            lines.append(f"{name}_count{_labels(attrs)} {hp.count}")
        return
    if isinstance(data, Sum):
        counter = data.is_monotonic
    elif isinstance(data, Gauge):
        counter = False
    else:  # pragma: no cover - exponential histograms are not used here
        return
    name = metric_name(metric.name, metric.unit or "", counter=counter)
    kind = "counter" if counter else "gauge"
    headers.setdefault(name, f"# HELP {name} {help_text}\n# TYPE {name} {kind}")
    lines = out.setdefault(name, [])
    for point in data.data_points:
        lines.append(f"{name}{_labels(point.attributes)} {format_value(float(point.value))}")


def render(data: MetricsData | None) -> str:
    """Text exposition of every metric in ``data`` (empty string when nothing was recorded)."""
    if data is None:
        return ""
    out: dict[str, list[str]] = {}
    headers: dict[str, str] = {}
    for rm in data.resource_metrics:
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                _render_metric(metric, out, headers)
    chunks = [headers[name] + "\n" + "".join(line + "\n" for line in out[name]) for name in out]
    return "".join(chunks)
