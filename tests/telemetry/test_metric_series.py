"""The series alerts and dashboards rely on: there from the start, bounded, rightly labelled."""

from __future__ import annotations

import inspect
import re
from collections.abc import Iterator

import pytest

from topup_guard import __version__, errors
from topup_guard.events import Condition, ConditionsChanged, Outcome, PollFailed, Started
from topup_guard.metrics import ERROR_KINDS, call_outcome, error_kind, status_label
from topup_guard.telemetry import Telemetry, setup_telemetry
from topup_guard.vonage.client import CallRecord

from .conftest import make_poll, make_topup


@pytest.fixture
def tel() -> Iterator[Telemetry]:
    telemetry = setup_telemetry(environ={})
    yield telemetry
    telemetry.shutdown(timeout=2.0)


def samples(text: str) -> dict[str, float]:
    """``name{labels}`` -> value for every sample line of a Prometheus text exposition."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            series, _, value = line.rpartition(" ")
            out[series] = float(value)
    return out


def label_values(text: str, metric: str, label: str) -> set[str]:
    pattern = re.compile(rf'^{metric}\{{.*\b{label}="([^"]*)"')
    return {m.group(1) for line in text.splitlines() if (m := pattern.match(line))}


def test_every_counter_is_at_zero_for_each_label_value_before_anything_happens(
    tel: Telemetry,
) -> None:
    got = samples(tel.render_prometheus())

    for outcome in Outcome:
        assert got[f'topup_guard_topups_total{{outcome="{outcome.value}"}}'] == 0
    assert got["topup_guard_topped_up_eur_total"] == 0
    for kind in ERROR_KINDS:
        assert got[f'topup_guard_poll_failures_total{{error_type="{kind}"}}'] == 0
    for result in ("sent", "dropped", "failed"):
        assert got[f'topup_guard_slack_messages_total{{result="{result}"}}'] == 0
    for condition in Condition:
        assert got[f'topup_guard_condition{{condition="{condition.value}"}}'] == 0
    unanswered = (
        'topup_guard_api_calls_total{endpoint="top-up",method="POST",outcome="timeout",'
        'status="none"}'
    )
    assert got[unanswered] == 0


def test_the_first_failed_top_up_is_an_increase_from_a_series_already_at_zero(
    tel: Telemetry,
) -> None:
    series = 'topup_guard_topups_total{outcome="failed"}'
    before = samples(tel.render_prometheus())[series]
    tel.sink.emit(make_topup(Outcome.FAILED, credited=None))
    assert (before, samples(tel.render_prometheus())[series]) == (0, 1)


def test_build_info_floor_and_timestamps_are_exported(tel: Telemetry) -> None:
    tel.sink.emit(
        Started(policy={"TOPUP_GUARD_MIN_BALANCE": "12.50"}, dry_run=False, coordination="x")
    )
    tel.sink.emit(make_poll())  # wall 1_800_000_000
    topup = make_topup(Outcome.SUCCEEDED)
    tel.sink.emit(topup)

    got = samples(tel.render_prometheus())

    assert got[f'topup_guard_build_info{{version="{__version__}"}}'] == 1
    assert got["topup_guard_min_balance_eur"] == 12.5
    assert got["topup_guard_last_poll_timestamp_seconds"] == 1_800_000_000
    assert got["topup_guard_last_topup_timestamp_seconds"] == topup.wall


def test_a_failed_top_up_does_not_move_the_last_top_up_time(tel: Telemetry) -> None:
    tel.sink.emit(make_topup(Outcome.FAILED, credited=None))
    tel.sink.emit(make_topup(Outcome.UNCONFIRMED, credited=None))
    assert "topup_guard_last_topup_timestamp_seconds" not in samples(tel.render_prometheus())


def test_a_floor_that_is_not_a_number_is_left_out_rather_than_guessed(tel: Telemetry) -> None:
    tel.sink.emit(
        Started(policy={"TOPUP_GUARD_MIN_BALANCE": "(unset)"}, dry_run=False, coordination="x")
    )
    assert "topup_guard_min_balance_eur" not in samples(tel.render_prometheus())


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("OutcomeUnknownError", "timeout"),
        ("RequestNotSentError", "connection"),
        ("TransportError", "connection"),
        ("ServerError", "server"),
        ("RateLimitedError", "rate_limited"),
        ("MalformedResponseError", "malformed"),
        ("AuthenticationError", "auth"),
        ("ForbiddenError", "auth"),
        ("NotFoundError", "auth"),
        ("TopUpRefusedError", "refused"),
        ("AutoReloadDisabledError", "refused"),
        ("ValidationError", "other"),
        ("LedgerError", "other"),
        ("CancelledError", "other"),
        ("SomethingNobodyWrote", "other"),
        ("", "other"),
    ],
)
def test_an_exception_class_name_becomes_one_of_a_few_error_kinds(name: str, kind: str) -> None:
    assert error_kind(name) == kind


def test_every_class_of_the_error_tree_maps_into_the_fixed_set() -> None:
    classes = [
        c for _, c in inspect.getmembers(errors, inspect.isclass) if c.__module__ == errors.__name__
    ]
    assert len(classes) > 15
    assert {error_kind(c.__name__) for c in classes} <= set(ERROR_KINDS)


def test_call_outcome_and_status_labels_stay_bounded() -> None:
    assert call_outcome("ok") == "ok"
    assert call_outcome("ServerError") == "server"
    assert [status_label(s) for s in (None, 200, 503, 0, 99999)] == [
        "none",
        "200",
        "503",
        "other",
        "other",
    ]


def test_no_label_value_comes_from_free_text_or_a_class_name(tel: Telemetry) -> None:
    for name in ("ServerError", "KeyError", "Boom: secret=abc", "OutcomeUnknownError"):
        tel.sink.emit(PollFailed(wall=1.0, error_type=name, message=name))
        tel.observe_call(CallRecord("get-balance", "GET", 1234, name, 0.1))
    tel.sink.emit(ConditionsChanged(wall=1.0, active={Condition.BREAKER_OPEN: "free text"}))

    text = tel.render_prometheus()

    assert label_values(text, "topup_guard_poll_failures_total", "error_type") == set(ERROR_KINDS)
    outcomes = label_values(text, "topup_guard_api_calls_total", "outcome")
    assert outcomes <= {"ok", *ERROR_KINDS}
    assert label_values(text, "topup_guard_api_calls_total", "status") <= {"none", "other"}
    assert label_values(text, "topup_guard_condition", "condition") == {c.value for c in Condition}
    every_value = set(re.findall(r'="([^"]*)"', text))
    assert not [v for v in every_value if "Error" in v or " " in v]
