"""Structured logs: JSON shape, trace ids, stable event names from the LogSink, secret masking."""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider

from topup_guard.events import (
    Condition,
    ConditionsChanged,
    Outcome,
    PollFailed,
    Started,
    Stopped,
)
from topup_guard.logs import LogSink, register_secret, setup_logging

from .conftest import make_poll, make_topup


@pytest.fixture
def root_logger() -> Iterator[logging.Logger]:
    """setup_logging changes the root logger: put it back afterwards."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield root
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.fixture
def json_stream(root_logger: logging.Logger) -> io.StringIO:
    stream = io.StringIO()
    setup_logging("json", "DEBUG", stream=stream)
    return stream


def lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_json_line_has_timestamp_level_logger_event_and_fields(json_stream: io.StringIO) -> None:
    from decimal import Decimal

    logging.getLogger("topup_guard.engine").info(
        "topup_succeeded", extra={"amount": Decimal("10.00"), "requests": 1, "tte": float("inf")}
    )

    (line,) = lines(json_stream)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", line["ts"])
    assert line["level"] == "info"
    assert line["logger"] == "topup_guard.engine"
    assert line["event"] == "topup_succeeded"
    assert line["amount"] == "10.00"
    assert line["requests"] == 1
    assert line["tte"] is None
    assert "trace_id" not in line


def test_lines_inside_a_span_carry_its_trace_and_span_ids(json_stream: io.StringIO) -> None:
    tracer = TracerProvider().get_tracer("test")
    with tracer.start_as_current_span("poll_cycle") as span:
        logging.getLogger("topup_guard.engine").warning("poll_failed")
    ctx = span.get_span_context()

    (line,) = lines(json_stream)
    assert line["trace_id"] == f"{ctx.trace_id:032x}"
    assert line["span_id"] == f"{ctx.span_id:016x}"


def test_exceptions_are_type_and_message_without_a_traceback(json_stream: io.StringIO) -> None:
    def fail() -> None:
        raise ValueError("balance is not a number")

    try:
        fail()
    except ValueError:
        logging.getLogger("topup_guard").exception("poll_failed")

    (line,) = lines(json_stream)
    assert line["exc_type"] == "ValueError"
    assert line["exc_message"] == "balance is not a number"
    assert line["exc_where"].startswith("test_logs.py:")
    assert "Traceback" not in json_stream.getvalue()


def test_registered_secrets_and_secret_shapes_are_masked(json_stream: io.StringIO) -> None:
    register_secret("Sup3r+Secret/Value")
    log = logging.getLogger("topup_guard")

    log.warning("topup_failed", extra={"detail": "sent Sup3r+Secret/Value to Vonage"})
    log.warning("topup_failed", extra={"detail": "form api_secret=Sup3r%2BSecret%2FValue&x=1"})
    log.warning("topup_failed", extra={"api_secret": "plain", "trx": "0123"})
    log.warning("poll_failed", extra={"url": "https://rest.nexmo.com/a?api_key=k&api_secret=zz"})
    log.warning("slack_failed", extra={"error": "POST https://hooks.slack.com/services/T1/B2/abc"})
    try:
        raise RuntimeError("Authorization: Bearer abcdef123456 rejected")
    except RuntimeError:
        log.exception("slack_failed")

    out = json_stream.getvalue()
    for leaked in ("Sup3r", "Secret%2F", "plain", "0123", "api_secret=zz", "T1/B2", "abcdef123456"):
        assert leaked not in out
    parsed = lines(json_stream)
    assert parsed[0]["detail"] == "sent [redacted] to Vonage"
    assert parsed[2]["api_secret"] == "[redacted]"
    assert parsed[3]["url"] == "https://rest.nexmo.com/a"


def test_text_format_is_readable_and_masked(root_logger: logging.Logger) -> None:
    stream = io.StringIO()
    setup_logging("text", "info", stream=stream)
    register_secret("Sup3rSecretValue")
    tracer = TracerProvider().get_tracer("test")

    with tracer.start_as_current_span("poll_cycle"):
        logging.getLogger("topup_guard.engine").info(
            "topup_dry_run", extra={"reason": "would top up Sup3rSecretValue", "count": 1}
        )
    logging.getLogger("topup_guard.engine").debug("poll")  # below the level

    (line,) = stream.getvalue().splitlines()
    assert " INFO    topup_guard.engine topup_dry_run " in line
    assert 'reason="would top up [redacted]"' in line
    assert "count=1" in line
    assert re.search(r"trace_id=[0-9a-f]{32} span_id=[0-9a-f]{16}$", line)


def test_setup_logging_twice_keeps_one_handler(root_logger: logging.Logger) -> None:
    setup_logging("json", "INFO", stream=io.StringIO())
    setup_logging("text", "INFO", stream=io.StringIO())

    assert [h.get_name() for h in root_logger.handlers].count("topup_guard") == 1


def test_log_sink_names_each_event_at_a_sensible_level(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="topup_guard.events")
    sink = LogSink()

    sink.emit(
        Started(
            policy={"TOPUP_GUARD_API_SECRET": "****** (set)"}, dry_run=False, coordination="sqlite"
        )
    )
    sink.emit(make_poll())
    sink.emit(
        PollFailed(
            wall=0.0, error_type="ServerError", message="HTTP 503 on GET /account/get-balance"
        )
    )
    sink.emit(make_topup(Outcome.SUCCEEDED))
    sink.emit(make_topup(Outcome.FAILED, credited=None))
    sink.emit(make_topup(Outcome.UNCONFIRMED, credited=None))
    sink.emit(make_topup(Outcome.DRY_RUN, credited=None))
    sink.emit(Stopped(reason="SIGTERM"))

    got = [(r.getMessage(), r.levelname) for r in caplog.records]
    assert got == [
        ("guard_started", "INFO"),
        ("poll", "DEBUG"),
        ("poll_failed", "WARNING"),
        ("topup_succeeded", "INFO"),
        ("topup_failed", "ERROR"),
        ("topup_unconfirmed", "ERROR"),
        ("topup_dry_run", "INFO"),
        ("guard_stopped", "INFO"),
    ]
    poll = caplog.records[1]
    assert poll.__dict__["balance"] == make_poll().balance.value
    assert poll.__dict__["action"] == "nothing"
    assert caplog.records[3].__dict__["attempt_id"] == 7


def test_log_sink_logs_conditions_when_they_start_and_end(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="topup_guard.events")
    sink = LogSink()
    low, breaker = Condition.LOW_BALANCE, Condition.BREAKER_OPEN

    sink.emit(ConditionsChanged(wall=0.0, active={low: "balance 4.00 < 5.00"}))
    sink.emit(ConditionsChanged(wall=1.0, active={low: "balance 3.00 < 5.00"}))  # still on
    sink.emit(ConditionsChanged(wall=2.0, active={low: "balance 3.00", breaker: "3 failures"}))
    sink.emit(ConditionsChanged(wall=3.0, active={}))

    got = [(r.getMessage(), r.levelname, r.__dict__["condition"]) for r in caplog.records]
    assert got == [
        ("condition_started", "WARNING", "low_balance"),
        ("condition_started", "WARNING", "breaker_open"),
        ("condition_ended", "INFO", "low_balance"),
        ("condition_ended", "INFO", "breaker_open"),
    ]


def test_log_sink_lines_are_valid_json_end_to_end(json_stream: io.StringIO) -> None:
    sink = LogSink()

    sink.emit(make_poll())
    sink.emit(make_topup(Outcome.SUCCEEDED))

    poll, topup = lines(json_stream)
    assert poll["event"] == "poll"
    assert poll["balance"] == "12.3456"
    assert poll["time_to_exhaustion_s"] == 1200.0
    assert topup["event"] == "topup_succeeded"
    assert topup["credited"] == "10.00"
    assert topup["time_to_exhaustion_s"] is None
