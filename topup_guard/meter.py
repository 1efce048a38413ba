"""A small in-process meter: the OpenTelemetry instruments the guard uses, kept in plain dicts.

``/metrics`` renders from ``LocalMeter.collect()``, so a guard that exports no metrics over OTLP
never loads the OpenTelemetry metrics SDK (1-2 MB and about a fifth of a poll's CPU: the SDK
spends some 25 calls on each measurement, this meter three). When the SDK is needed (an OTLP
metrics endpoint, or readers injected by tests), ``TeeMeter`` records each measurement into both,
so Prometheus and OTLP see the very same instruments.

Semantics follow the SDK's defaults: counters are cumulative sums that ignore negative amounts,
gauges keep the last value per attribute set, histograms use explicit bucket boundaries (a value
on a boundary counts in that bucket, like Prometheus' ``le``), observable gauges are asked at
collection time. Not thread-safe: every instrument is used from the event loop's thread.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal, TypeVar

from opentelemetry.context import Context
from opentelemetry.metrics import (
    CallbackOptions,
    CallbackT,
    Counter,
    Histogram,
    Meter,
    NoOpCounter,
    NoOpHistogram,
    NoOpMeter,
    NoOpObservableGauge,
    ObservableGauge,
    Observation,
)
from opentelemetry.metrics import _Gauge as Gauge
from opentelemetry.metrics import _NoOpGauge as NoOpGauge
from opentelemetry.util.types import Attributes

Key = tuple[tuple[str, object], ...]
Kind = Literal["counter", "gauge", "histogram"]
# The SDK's default boundaries, for a histogram created without advice.
DEFAULT_BUCKETS = (0.0, 5.0, 10.0, 25.0, 50.0, 75.0, 100.0, 250.0, 500.0, 750.0, 1000.0, 2500.0,
                   5000.0, 7500.0, 10000.0)  # fmt: skip


def _key(attributes: Attributes) -> Key:
    return tuple(sorted(attributes.items())) if attributes else ()


@dataclass(frozen=True, slots=True)
class Point:
    attributes: dict[str, object]
    value: float


@dataclass(frozen=True, slots=True)
class HistogramPoint:
    attributes: dict[str, object]
    bounds: tuple[float, ...]
    bucket_counts: tuple[int, ...]  # len(bounds) + 1: the last is above every bound
    count: int
    sum: float


@dataclass(frozen=True, slots=True)
class Family:
    """One instrument's current points, for the Prometheus renderer."""

    name: str
    unit: str
    description: str
    kind: Kind
    points: list[Point] = field(default_factory=list)
    histogram_points: list[HistogramPoint] = field(default_factory=list)


class _Described:
    """The name, unit and description (the API's instruments do not keep them)."""

    def _describe(self, name: str, unit: str, description: str) -> None:
        self.name, self.unit, self.description = name, unit, description


class _LocalCounter(NoOpCounter, _Described):
    def __init__(self, name: str, unit: str = "", description: str = "") -> None:
        super().__init__(name, unit=unit, description=description)
        self._describe(name, unit, description)
        self.values: dict[Key, float] = {}

    def add(
        self, amount: float, attributes: Attributes = None, context: Context | None = None
    ) -> None:
        if amount >= 0:  # the SDK drops a negative increment of a monotonic counter too
            key = _key(attributes)
            self.values[key] = self.values.get(key, 0) + amount


class _LocalGauge(NoOpGauge, _Described):
    def __init__(self, name: str, unit: str = "", description: str = "") -> None:
        super().__init__(name, unit=unit, description=description)
        self._describe(name, unit, description)
        self.values: dict[Key, float] = {}

    def set(
        self, amount: float, attributes: Attributes = None, context: Context | None = None
    ) -> None:
        self.values[_key(attributes)] = amount


class _LocalHistogram(NoOpHistogram, _Described):
    def __init__(
        self,
        name: str,
        unit: str = "",
        description: str = "",
        explicit_bucket_boundaries_advisory: Sequence[float] | None = None,
    ) -> None:
        super().__init__(name, unit=unit, description=description)
        self._describe(name, unit, description)
        self.bounds = tuple(explicit_bucket_boundaries_advisory or DEFAULT_BUCKETS)
        self.values: dict[Key, tuple[list[int], list[float]]] = {}  # buckets, [sum]

    def record(
        self, amount: float, attributes: Attributes = None, context: Context | None = None
    ) -> None:
        key = _key(attributes)
        entry = self.values.get(key)
        if entry is None:
            entry = self.values[key] = ([0] * (len(self.bounds) + 1), [0.0])
        entry[0][bisect_left(self.bounds, amount)] += 1
        entry[1][0] += amount


class _LocalObservableGauge(NoOpObservableGauge, _Described):
    def __init__(
        self,
        name: str,
        callbacks: Sequence[CallbackT] | None = None,
        unit: str = "",
        description: str = "",
    ) -> None:
        super().__init__(name, callbacks, unit=unit, description=description)
        self._describe(name, unit, description)
        self.callbacks = list(callbacks or ())

    def observe(self) -> dict[Key, float]:
        values: dict[Key, float] = {}
        for callback in self.callbacks:
            if not callable(callback):  # a generator callback: not used by the guard
                continue
            observations: Iterable[Observation] = callback(CallbackOptions())
            for o in observations:
                values[_key(o.attributes)] = o.value
        return values


_Instrument = _LocalCounter | _LocalGauge | _LocalHistogram | _LocalObservableGauge
_I = TypeVar("_I", _LocalCounter, _LocalGauge, _LocalHistogram, _LocalObservableGauge)


class LocalMeter(NoOpMeter):
    """Counters, gauges, histograms and observable gauges that ``collect()`` can read back."""

    def __init__(self, name: str = "topup_guard") -> None:
        super().__init__(name)
        self._instruments: list[_Instrument] = []

    def create_counter(self, name: str, unit: str = "", description: str = "") -> Counter:
        return self._add(_LocalCounter(name, unit, description))

    def create_gauge(self, name: str, unit: str = "", description: str = "") -> Gauge:
        return self._add(_LocalGauge(name, unit, description))

    def create_histogram(
        self,
        name: str,
        unit: str = "",
        description: str = "",
        *,
        explicit_bucket_boundaries_advisory: Sequence[float] | None = None,
    ) -> Histogram:
        advice = explicit_bucket_boundaries_advisory
        return self._add(_LocalHistogram(name, unit, description, advice))

    def create_observable_gauge(
        self,
        name: str,
        callbacks: Sequence[CallbackT] | None = None,
        unit: str = "",
        description: str = "",
    ) -> ObservableGauge:
        return self._add(_LocalObservableGauge(name, callbacks, unit, description))

    def _add(self, instrument: _I) -> _I:
        self._instruments.append(instrument)
        return instrument

    def collect(self) -> list[Family]:
        """Every instrument with its current points (an observable gauge may have none)."""
        return [_family(i) for i in self._instruments]


def _family(i: _Instrument) -> Family:
    if isinstance(i, _LocalHistogram):
        hpoints = [
            HistogramPoint(dict(key), i.bounds, tuple(buckets), sum(buckets), total[0])
            for key, (buckets, total) in i.values.items()
        ]
        return Family(i.name, i.unit, i.description, "histogram", histogram_points=hpoints)
    values = i.observe() if isinstance(i, _LocalObservableGauge) else i.values
    kind: Kind = "counter" if isinstance(i, _LocalCounter) else "gauge"
    points = [Point(dict(k), v) for k, v in values.items()]
    return Family(i.name, i.unit, i.description, kind, points)


class TeeMeter(NoOpMeter):
    """Creates each instrument on every meter given and records into all of them."""

    def __init__(self, *meters: Meter) -> None:
        super().__init__("topup_guard")
        self._meters = meters

    def create_counter(self, name: str, unit: str = "", description: str = "") -> Counter:
        return _TeeCounter(name, [m.create_counter(name, unit, description) for m in self._meters])

    def create_gauge(self, name: str, unit: str = "", description: str = "") -> Gauge:
        return _TeeGauge(name, [m.create_gauge(name, unit, description) for m in self._meters])

    def create_histogram(
        self,
        name: str,
        unit: str = "",
        description: str = "",
        *,
        explicit_bucket_boundaries_advisory: Sequence[float] | None = None,
    ) -> Histogram:
        advice = explicit_bucket_boundaries_advisory
        parts = [
            m.create_histogram(name, unit, description, explicit_bucket_boundaries_advisory=advice)
            for m in self._meters
        ]
        return _TeeHistogram(name, parts)

    def create_observable_gauge(
        self,
        name: str,
        callbacks: Sequence[CallbackT] | None = None,
        unit: str = "",
        description: str = "",
    ) -> ObservableGauge:
        for m in self._meters:
            m.create_observable_gauge(name, callbacks, unit, description)
        return NoOpObservableGauge(name, callbacks, unit=unit, description=description)


class _TeeCounter(NoOpCounter):
    def __init__(self, name: str, parts: list[Counter]) -> None:
        super().__init__(name)
        self._parts = parts

    def add(
        self, amount: float, attributes: Attributes = None, context: Context | None = None
    ) -> None:
        for part in self._parts:
            part.add(amount, attributes, context)


class _TeeGauge(NoOpGauge):
    def __init__(self, name: str, parts: list[Gauge]) -> None:
        super().__init__(name)
        self._parts = parts

    def set(
        self, amount: float, attributes: Attributes = None, context: Context | None = None
    ) -> None:
        for part in self._parts:
            part.set(amount, attributes, context)


class _TeeHistogram(NoOpHistogram):
    def __init__(self, name: str, parts: list[Histogram]) -> None:
        super().__init__(name)
        self._parts = parts

    def record(
        self, amount: float, attributes: Attributes = None, context: Context | None = None
    ) -> None:
        for part in self._parts:
            part.record(amount, attributes, context)
