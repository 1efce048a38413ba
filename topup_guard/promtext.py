"""The guard's metrics rendered as Prometheus text exposition format 0.0.4, for ``/metrics``.

A pull endpoint needs no collector: the health server collects the in-process meter
(``topup_guard.meter``, which OTLP export shares when configured) and renders the result here, so
Prometheus and OTLP see the very same instruments. Naming follows the
OpenTelemetry-to-Prometheus compatibility rules: dots become underscores, the unit becomes a
suffix (``s`` → ``_seconds``, ``EUR/s`` → ``_eur_per_second``, ``{call}`` annotations dropped) and
monotonic sums end in ``_total``. No prometheus_client dependency.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping

from topup_guard.meter import Family

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


def _render_family(family: Family, out: dict[str, list[str]], headers: dict[str, str]) -> None:
    if not family.points and not family.histogram_points:
        return  # like the SDK: an instrument without a point is not exported at all
    help_text = (family.description or family.name).replace("\\", r"\\").replace("\n", r"\n")
    counter = family.kind == "counter"
    name = metric_name(family.name, family.unit, counter=counter)
    headers.setdefault(name, f"# HELP {name} {help_text}\n# TYPE {name} {family.kind}")
    lines = out.setdefault(name, [])
    for hp in family.histogram_points:
        cumulative = 0
        for bound, count in zip(hp.bounds, hp.bucket_counts, strict=False):
            cumulative += count
            le = (("le", format_value(float(bound))),)
            lines.append(f"{name}_bucket{_labels(hp.attributes, le)} {cumulative}")
        lines.append(f"{name}_bucket{_labels(hp.attributes, (('le', '+Inf'),))} {hp.count}")
        lines.append(f"{name}_sum{_labels(hp.attributes)} {format_value(float(hp.sum))}")
        lines.append(f"{name}_count{_labels(hp.attributes)} {hp.count}")
    for point in family.points:
        lines.append(f"{name}{_labels(point.attributes)} {format_value(float(point.value))}")


def render(families: Iterable[Family]) -> str:
    """Text exposition of every family (empty string when nothing was recorded)."""
    out: dict[str, list[str]] = {}
    headers: dict[str, str] = {}
    for family in families:
        _render_family(family, out, headers)
    chunks = [headers[name] + "\n" + "".join(line + "\n" for line in out[name]) for name in out]
    return "".join(chunks)
