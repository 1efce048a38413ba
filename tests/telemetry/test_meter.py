"""The in-process meter agrees with the OpenTelemetry SDK on each instrument kind the guard uses."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pytest
from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from topup_guard.meter import Family, LocalMeter, TeeMeter

BOUNDS = (0.1, 0.5, 1.0)


def sdk_points(reader: InMemoryMetricReader) -> dict[str, list[Any]]:
    data = reader.get_metrics_data()
    if data is None:  # nothing recorded at all
        return {}
    return {
        m.name: list(m.data.data_points)
        for rm in data.resource_metrics
        for sm in rm.scope_metrics
        for m in sm.metrics
    }


def local_families(meter: LocalMeter) -> dict[str, Family]:
    return {f.name: f for f in meter.collect()}


@pytest.fixture
def both() -> tuple[LocalMeter, InMemoryMetricReader, TeeMeter]:
    local, reader = LocalMeter(), InMemoryMetricReader()
    sdk = MeterProvider(metric_readers=[reader], shutdown_on_exit=False).get_meter("t")
    return local, reader, TeeMeter(local, sdk)


def test_counters_sum_per_attribute_set_and_drop_negative_amounts_like_the_sdk(
    both: tuple[LocalMeter, InMemoryMetricReader, TeeMeter],
) -> None:
    local, reader, tee = both
    calls = tee.create_counter("calls", unit="{call}", description="calls")
    for amount, attrs in [(1, {"a": "x", "b": "y"}), (2, {"b": "y", "a": "x"}), (-5, {}), (0, {})]:
        calls.add(amount, attrs)

    want = {tuple(sorted(p.attributes.items())): p.value for p in sdk_points(reader)["calls"]}
    family = local_families(local)["calls"]
    got = {tuple(sorted(p.attributes.items())): p.value for p in family.points}
    assert got == want == {(("a", "x"), ("b", "y")): 3, (): 0}
    assert (family.kind, family.unit, family.description) == ("counter", "{call}", "calls")


def test_gauges_keep_the_last_value_and_observable_gauges_ask_their_callback(
    both: tuple[LocalMeter, InMemoryMetricReader, TeeMeter],
) -> None:
    local, reader, tee = both
    level = tee.create_gauge("level")
    level.set(3.5, {"w": "short"})
    level.set(1.25, {"w": "short"})
    seen: list[float] = []

    def observe(options: CallbackOptions) -> Iterable[Observation]:
        return [Observation(v) for v in seen[-1:]]

    tee.create_observable_gauge("tte", callbacks=[observe])

    assert "tte" not in sdk_points(reader)
    assert local_families(local)["tte"].points == []
    seen.append(42.0)
    sdk = sdk_points(reader)
    fams = local_families(local)
    assert [p.value for p in sdk["level"]] == [p.value for p in fams["level"].points] == [1.25]
    assert [p.value for p in sdk["tte"]] == [p.value for p in fams["tte"].points] == [42.0]


@pytest.mark.parametrize("values", [[0.05, 0.1, 0.1000001, 0.5, 0.7, 1.0, 3.0], [], [100.0]])
def test_histogram_buckets_count_a_value_on_a_boundary_in_that_bucket_like_the_sdk(
    both: tuple[LocalMeter, InMemoryMetricReader, TeeMeter], values: list[float]
) -> None:
    local, reader, tee = both
    delay = tee.create_histogram("delay", unit="s", explicit_bucket_boundaries_advisory=BOUNDS)
    for v in values:
        delay.record(v, {"e": "get"})

    points = local_families(local)["delay"].histogram_points
    if not values:
        assert points == []
        assert "delay" not in sdk_points(reader)
        return
    (sdk,) = sdk_points(reader)["delay"]
    (mine,) = points
    assert mine.bounds == tuple(sdk.explicit_bounds) == BOUNDS
    assert list(mine.bucket_counts) == list(sdk.bucket_counts)
    assert (mine.count, mine.sum) == (sdk.count, pytest.approx(sdk.sum))
    assert mine.attributes == {"e": "get"}
