"""Telemetry: metrics from events, redaction before export, OTEL_* variables, an OTLP receiver."""

from __future__ import annotations

import asyncio
import math
import re
import socket
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from tests.otlp_receiver import Receiver, otlp_env
from topup_guard import redact
from topup_guard.events import Condition, ConditionsChanged, Outcome, PollFailed
from topup_guard.otelenv import parse_otel_env
from topup_guard.telemetry import Telemetry, setup_telemetry
from topup_guard.vonage.client import CallRecord

from .conftest import make_forecast, make_poll, make_topup


@pytest.fixture
def spans() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def reader() -> InMemoryMetricReader:
    return InMemoryMetricReader()


@pytest.fixture
def tel(spans: InMemorySpanExporter, reader: InMemoryMetricReader) -> Iterator[Telemetry]:
    telemetry = setup_telemetry(environ={}, span_exporter=spans, metric_readers=[reader])
    yield telemetry
    telemetry.shutdown(timeout=2.0)


def collected(reader: InMemoryMetricReader) -> dict[str, tuple[str, list[Any]]]:
    """metric name -> (unit, data points) from one collection."""
    data = reader.get_metrics_data()
    out: dict[str, tuple[str, list[Any]]] = {}
    assert data is not None
    for rm in data.resource_metrics:
        for sm in rm.scope_metrics:
            for m in sm.metrics:
                out[m.name] = (m.unit or "", list(m.data.data_points))
    return out


def value_of(points: list[Any], **attrs: str) -> float:
    matching = [p.value for p in points if dict(p.attributes or {}) == attrs]
    assert len(matching) == 1, (attrs, points)
    return float(matching[0])


# --- metrics -------------------------------------------------------------------------------------
def test_poll_event_sets_balance_rates_exhaustion_and_delay(
    tel: Telemetry, reader: InMemoryMetricReader
) -> None:
    tel.sink.emit(make_poll(balance="12.3456", forecast=make_forecast(rate=0.02, tte=600.0)))

    got = collected(reader)
    assert got["topup_guard.balance"][0] == "EUR"
    assert value_of(got["topup_guard.balance"][1]) == pytest.approx(12.3456)
    assert got["topup_guard.spend_rate"][0] == "EUR/s"
    assert value_of(got["topup_guard.spend_rate"][1], window="short") == pytest.approx(0.02)
    assert value_of(got["topup_guard.spend_rate"][1], window="long") == pytest.approx(0.01)
    assert got["topup_guard.time_to_exhaustion"][0] == "s"
    assert value_of(got["topup_guard.time_to_exhaustion"][1]) == 600.0
    unit, delays = got["topup_guard.poll_delay"]
    assert unit == "s"
    assert delays[0].count == 1
    assert delays[0].sum == pytest.approx(0.7)


def test_time_to_exhaustion_is_absent_while_nothing_is_spent(
    tel: Telemetry, reader: InMemoryMetricReader
) -> None:
    tel.sink.emit(make_poll(forecast=make_forecast(tte=300.0)))
    assert "topup_guard.time_to_exhaustion" in collected(reader)

    tel.sink.emit(make_poll(forecast=make_forecast(rate=0.0, tte=math.inf)))

    assert "topup_guard.time_to_exhaustion" not in collected(reader)


def test_topups_are_counted_by_outcome_and_only_confirmed_money_is_summed(
    tel: Telemetry, reader: InMemoryMetricReader
) -> None:
    tel.sink.emit(make_topup(Outcome.SUCCEEDED, credited="10.00"))
    tel.sink.emit(make_topup(Outcome.SUCCEEDED, credited="10.50"))
    tel.sink.emit(make_topup(Outcome.UNCONFIRMED, credited=None))
    tel.sink.emit(make_topup(Outcome.DRY_RUN, credited=None))

    got = collected(reader)
    topups = got["topup_guard.topups"][1]
    assert value_of(topups, outcome="succeeded") == 2
    assert value_of(topups, outcome="unconfirmed") == 1
    assert value_of(topups, outcome="dry_run") == 1
    assert got["topup_guard.topped_up"][0] == "EUR"
    assert value_of(got["topup_guard.topped_up"][1]) == pytest.approx(20.5)


def test_api_calls_slack_messages_failures_and_conditions_are_counted(
    tel: Telemetry, reader: InMemoryMetricReader
) -> None:
    tel.observe_call(CallRecord("get-balance", "GET", 200, "ok", 0.05))
    tel.observe_call(CallRecord("get-balance", "GET", 200, "ok", 0.07))
    tel.observe_call(CallRecord("top-up", "POST", None, "OutcomeUnknownError", 10.0))
    tel.count_slack("sent")
    tel.count_slack("dropped")
    tel.sink.emit(PollFailed(wall=0.0, error_type="ServerError", message="503"))
    tel.sink.emit(ConditionsChanged(wall=0.0, active={Condition.LOW_BALANCE: "below 5"}))
    tel.sink.emit(ConditionsChanged(wall=1.0, active={}))

    got = collected(reader)
    calls = got["topup_guard.api_calls"][1]
    assert value_of(calls, endpoint="get-balance", method="GET", status="200", outcome="ok") == 2
    assert value_of(calls, endpoint="top-up", method="POST", status="none", outcome="timeout") == 1
    slack = got["topup_guard.slack_messages"][1]
    assert value_of(slack, result="sent") == 1
    assert value_of(slack, result="dropped") == 1
    assert value_of(got["topup_guard.poll_failures"][1], error_type="server") == 1
    assert value_of(got["topup_guard.condition"][1], condition="low_balance") == 0


_LABEL = r'[a-zA-Z_][a-zA-Z0-9_]*="[^"]*"'
_SAMPLE = re.compile(rf"^[a-zA-Z_:][a-zA-Z0-9_:]*(\{{{_LABEL}(,{_LABEL})*\}})? \S+$")


def test_prometheus_text_has_converted_names_units_and_types(tel: Telemetry) -> None:
    tel.sink.emit(make_poll(forecast=make_forecast(rate=0.02, tte=600.0)))
    tel.sink.emit(make_topup())
    tel.observe_call(CallRecord("get-balance", "GET", 200, "ok", 0.05))

    text = tel.render_prometheus()

    for line in text.splitlines():
        assert line.startswith(("# HELP ", "# TYPE ")) or _SAMPLE.match(line), line
    assert "# TYPE topup_guard_balance_eur gauge" in text
    assert "topup_guard_balance_eur 12.3456" in text
    assert 'topup_guard_spend_rate_eur_per_second{window="short"} 0.02' in text
    assert "topup_guard_time_to_exhaustion_seconds 600" in text
    assert "# TYPE topup_guard_topups_total counter" in text
    assert 'topup_guard_topups_total{outcome="succeeded"} 1' in text
    assert "topup_guard_topped_up_eur_total 10" in text
    assert (
        'topup_guard_api_calls_total{endpoint="get-balance",method="GET",outcome="ok",'
        'status="200"} 1' in text
    )
    assert "# TYPE topup_guard_poll_delay_seconds histogram" in text
    assert 'topup_guard_poll_delay_seconds_bucket{le="0.5"} 0' in text
    assert 'topup_guard_poll_delay_seconds_bucket{le="1"} 1' in text
    assert 'topup_guard_poll_delay_seconds_bucket{le="+Inf"} 1' in text
    assert "topup_guard_poll_delay_seconds_count 1" in text


# --- traces and redaction ------------------------------------------------------------------------
def test_engine_spans_from_the_global_tracer_reach_the_current_telemetry(
    spans: InMemorySpanExporter,
) -> None:
    engine_tracer = trace.get_tracer("topup_guard")  # what the engine does at import time
    first = setup_telemetry(environ={}, span_exporter=spans)
    with (
        engine_tracer.start_as_current_span("poll_cycle"),
        engine_tracer.start_as_current_span("decide"),
    ):
        pass
    first.shutdown(timeout=2.0)
    later = InMemorySpanExporter()
    second = setup_telemetry(environ={}, span_exporter=later)
    with engine_tracer.start_as_current_span("poll_cycle"):
        pass
    second.force_flush()
    second.shutdown(timeout=2.0)
    with engine_tracer.start_as_current_span("after_shutdown") as span:
        assert not span.is_recording()

    names = [s.name for s in spans.get_finished_spans()]
    assert sorted(names) == ["decide", "poll_cycle"]
    decide = next(s for s in spans.get_finished_spans() if s.name == "decide")
    assert decide.resource.attributes["service.name"] == "topup-guard"
    assert decide.parent is not None
    assert [s.name for s in later.get_finished_spans()] == ["poll_cycle"]


def test_secrets_and_url_queries_never_reach_the_exporter(
    tel: Telemetry, spans: InMemorySpanExporter
) -> None:
    redact.register_secret("Sup3rSecretValue")
    with tel.tracer.start_as_current_span("topup") as span:
        span.set_attributes(
            {
                "topup.attempt_id": 7,
                "decision.action": "top_up",
                "api_secret": "Sup3rSecretValue",
                "http.request.header.authorization": "Basic YWJjOmRlZg==",
                "topup.trx": "8ef2447e69604f642ae59363aa5f781b",
                "slack.webhook": "https://hooks.slack.com/services/T0/B0/XXXX",
                "url.full": "https://rest.nexmo.com/account/top-up?api_key=k&trx=abc",
                "note": "retrying with secret Sup3rSecretValue",
            }
        )
        span.record_exception(RuntimeError("POST https://rest.nexmo.com/x?api_secret=zzz failed"))
        span.set_status(StatusCode.ERROR, "failed for https://h/p?trx=abc")
    tel.force_flush()

    (exported,) = spans.get_finished_spans()
    attrs = dict(exported.attributes or {})
    assert attrs["topup.attempt_id"] == 7
    assert attrs["decision.action"] == "top_up"
    for key in ("api_secret", "http.request.header.authorization", "topup.trx", "slack.webhook"):
        assert attrs[key] == redact.MASK
    assert attrs["url.full"] == "https://rest.nexmo.com/account/top-up"
    assert attrs["note"] == f"retrying with secret {redact.MASK}"
    everything = repr(attrs) + repr([dict(e.attributes or {}) for e in exported.events])
    everything += exported.status.description or ""
    for leaked in ("Sup3rSecretValue", "zzz", "trx=abc", "YWJjOmRlZg", "8ef2447e", "XXXX"):
        assert leaked not in everything


def test_sdk_disabled_makes_telemetry_a_noop(spans: InMemorySpanExporter) -> None:
    tel = setup_telemetry(environ={"OTEL_SDK_DISABLED": "true"}, span_exporter=spans)
    with tel.tracer.start_as_current_span("poll_cycle") as span:
        assert not span.is_recording()
    tel.sink.emit(make_poll())
    tel.observe_call(CallRecord("get-balance", "GET", 200, "ok", 0.1))
    tel.count_slack("sent")

    assert not tel.enabled
    assert tel.render_prometheus() == ""
    assert spans.get_finished_spans() == ()
    tel.shutdown()


def test_nothing_configured_means_no_otlp_exporter_and_no_warnings(
    spans: InMemorySpanExporter, caplog: pytest.LogCaptureFixture
) -> None:
    tel = setup_telemetry(environ={}, span_exporter=spans)
    with tel.tracer.start_as_current_span("poll_cycle"):
        pass
    tel.sink.emit(make_poll())
    tel.shutdown(timeout=2.0)

    assert tel.env.traces is None
    assert tel.env.metrics is None
    assert tel.describe()["traces_endpoint"] == "(none)"
    assert [s.name for s in spans.get_finished_spans()] == ["poll_cycle"]
    assert [r for r in caplog.records if r.levelno >= 30] == []


@pytest.mark.parametrize(
    ("environ", "traces", "metrics"),
    [
        ({}, None, None),
        (
            {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318/"},
            "http://collector:4318/v1/traces",
            "http://collector:4318/v1/metrics",
        ),
        (
            {
                "OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318",
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://tempo:4318/custom",
                "OTEL_METRICS_EXPORTER": "none",
            },
            "http://tempo:4318/custom",
            None,
        ),
        ({"OTEL_TRACES_EXPORTER": "otlp"}, "http://localhost:4318/v1/traces", None),
        (
            {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4317", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"},
            None,
            None,
        ),
    ],
)
def test_otel_variables_choose_the_endpoints(
    environ: dict[str, str], traces: str | None, metrics: str | None
) -> None:
    env = parse_otel_env(environ, "topup-guard")
    assert (env.traces.endpoint if env.traces else None) == traces
    assert (env.metrics.endpoint if env.metrics else None) == metrics


def test_otel_variables_set_service_resource_headers_and_timeouts() -> None:
    env = parse_otel_env(
        {
            "OTEL_SERVICE_NAME": "guard-eu",
            "OTEL_RESOURCE_ATTRIBUTES": "service.name=ignored,deployment.environment=prod%20eu",
            "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318",
            "OTEL_EXPORTER_OTLP_HEADERS": "x-api-key=abc%3D%3D,tenant=t1",
            "OTEL_EXPORTER_OTLP_TIMEOUT": "2000",
            "OTEL_EXPORTER_OTLP_COMPRESSION": "gzip",
            "OTEL_TRACES_EXPORTER": "otlp,console",
        },
        "topup-guard",
    )
    assert env.service_name == "guard-eu"
    assert env.resource_attributes["deployment.environment"] == "prod eu"
    assert env.traces is not None
    assert env.traces.headers == {"x-api-key": "abc==", "tenant": "t1"}
    assert "abc==" not in repr(env)
    assert env.traces.timeout_s == 2.0
    assert env.traces.compression == "gzip"
    assert env.problems == ("OTEL_TRACES_EXPORTER=console is not supported; ignored",)


# --- a real OTLP/HTTP receiver -------------------------------------------------------------------


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    rec = Receiver()
    await rec.start()
    yield rec
    await rec.stop()


async def test_spans_and_metrics_arrive_at_an_otlp_collector_redacted(receiver: Receiver) -> None:
    environ = otlp_env(
        receiver.port,
        OTEL_EXPORTER_OTLP_COMPRESSION="gzip",
        OTEL_EXPORTER_OTLP_HEADERS="x-collector-key=CollectorKey123",
        OTEL_RESOURCE_ATTRIBUTES="deployment.environment=test",
    )
    tel = setup_telemetry(environ=environ)
    tracer = tel.tracer
    with (
        tracer.start_as_current_span("poll_cycle"),
        tracer.start_as_current_span("decide") as decide,
    ):
        decide.set_attributes(
            {"decision.action": "top_up", "forecast.rate": 0.02, "api_secret": "s3cr3t-value"}
        )
    tel.sink.emit(make_poll())
    tel.sink.emit(make_topup())

    assert await asyncio.to_thread(tel.force_flush, 3.0)  # True says little: check the receiver
    await tel.aclose(grace=3.0)

    assert sorted(receiver.span_names()) == ["decide", "poll_cycle"]
    resource = receiver.traces[0].resource_spans[0].resource
    res_attrs = {a.key: a.value.string_value for a in resource.attributes}
    assert res_attrs["service.name"] == "topup-guard"
    assert res_attrs["deployment.environment"] == "test"
    (decide_span,) = [s for s in receiver.spans() if s.name == "decide"]
    attrs = {a.key: a.value for a in decide_span.attributes}
    assert attrs["decision.action"].string_value == "top_up"
    assert attrs["forecast.rate"].double_value == pytest.approx(0.02)
    assert attrs["api_secret"].string_value == redact.MASK
    assert receiver.headers[0]["x-collector-key"] == "CollectorKey123"
    assert {
        "topup_guard.balance",
        "topup_guard.topups",
        "topup_guard.poll_delay",
    } <= receiver.metric_names()


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def max_loop_lag(work: Any, tick: float = 0.01) -> tuple[float, float]:
    """Run ``work`` (a coroutine) while measuring the longest gap between 10 ms ticks."""
    lag = 0.0
    done = False

    async def ticker() -> None:
        nonlocal lag
        while not done:
            before = time.monotonic()
            await asyncio.sleep(tick)
            lag = max(lag, time.monotonic() - before - tick)

    task = asyncio.create_task(ticker())
    await asyncio.sleep(tick)  # the ticker must be running before the work can block anything
    started = time.monotonic()
    await work
    elapsed = time.monotonic() - started
    done = True
    await task
    return lag, elapsed


async def _emit_for_a_while(tel: Telemetry, seconds: float) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        await asyncio.sleep(0.02)
        with tel.tracer.start_as_current_span("poll_cycle"):
            tel.sink.emit(make_poll())


async def test_a_collector_that_is_down_neither_blocks_the_loop_nor_shutdown() -> None:
    tel = setup_telemetry(environ=otlp_env(closed_port(), OTEL_METRIC_EXPORT_INTERVAL="1000"))

    lag, _ = await max_loop_lag(_emit_for_a_while(tel, 0.6))
    close_lag, close_time = await max_loop_lag(tel.aclose(grace=1.0))

    assert lag < 0.25
    assert close_lag < 0.25
    assert close_time < 1.5


async def test_a_slow_collector_neither_blocks_the_loop_nor_shutdown() -> None:
    slow = Receiver(delay=3.0)
    await slow.start()
    try:
        tel = setup_telemetry(environ=otlp_env(slow.port))
        lag, _ = await max_loop_lag(_emit_for_a_while(tel, 0.6))
        close_lag, close_time = await max_loop_lag(tel.aclose(grace=1.0))
    finally:
        await slow.stop()

    assert lag < 0.25
    assert close_lag < 0.25
    assert close_time < 1.5
    assert slow.traces == []  # every export timed out: nothing was accepted


def test_notifications_are_counted_by_channel_and_result(
    tel: Telemetry, reader: InMemoryMetricReader
) -> None:
    tel.count_notification("slack", "sent")
    tel.count_notification("webhook", "failed")
    tel.count_notification("pagerduty", "sent")
    tel.count_notification("pagerduty", "dropped")
    got = collected(reader)
    counted = got["topup_guard.notifications"][1]
    assert value_of(counted, channel="slack", result="sent") == 1
    assert value_of(counted, channel="webhook", result="failed") == 1
    assert value_of(counted, channel="pagerduty", result="sent") == 1
    assert value_of(counted, channel="pagerduty", result="dropped") == 1
    # The Slack-only counter of earlier versions still counts Slack, and only Slack.
    assert value_of(got["topup_guard.slack_messages"][1], result="sent") == 1
    assert "topup_guard_notifications_total" in tel.render_prometheus()
