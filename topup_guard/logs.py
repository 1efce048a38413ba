"""Structured logs: one JSON object per line (or aligned text for humans), secrets masked.

The log message *is* the event name — ``log.info("topup_succeeded", extra={...})`` — so a log
query never depends on wording. Every line carries ``ts``, ``level``, ``logger``, ``event``, the
extra fields, and ``trace_id``/``span_id`` when written inside an OpenTelemetry span, which links
a log line to its ``poll_cycle`` trace. Exceptions are rendered as type, message and the
innermost frame; never locals, never a full traceback that could quote a request.

Redaction is defence in depth: ``register_secret(value)`` (done at start for every configured
secret) masks that value in every line, and ``redact.scrub_text`` masks anything shaped like a
secret or a URL query string.
"""

from __future__ import annotations

import json
import logging
import math
import os
import sys
import traceback
from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal
from enum import Enum
from typing import IO, Any, Literal

from opentelemetry import trace

from topup_guard import redact
from topup_guard.events import (
    ConditionsChanged,
    Event,
    FleetCycle,
    Outcome,
    PollCompleted,
    PollFailed,
    Started,
    Stopped,
    TopUpFinished,
    TransferFinished,
)

register_secret = redact.register_secret

# Attributes every LogRecord has: anything else on a record came from ``extra``.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {
    "message",
    "asctime",
    "taskName",
}


def jsonable(value: object) -> Any:
    """A JSON-safe copy: Decimal → str (exact), non-finite float → None, enums → their value."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, Enum):
        return jsonable(value.value)
    if isinstance(value, Mapping):
        return {str(jsonable(k)): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [jsonable(v) for v in value]
    return str(value)


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    """The extra fields of a record, JSON-safe and scrubbed."""
    return {
        k: redact.scrub_tree(k, jsonable(v))
        for k, v in record.__dict__.items()
        if k not in _STANDARD and not k.startswith("_")
    }


def _trace_ids() -> dict[str, str]:
    ctx = trace.get_current_span().get_span_context()
    if not ctx.is_valid:
        return {}
    return {
        "trace_id": trace.format_trace_id(ctx.trace_id),
        "span_id": trace.format_span_id(ctx.span_id),
    }


def _exception(record: logging.LogRecord) -> dict[str, str]:
    if not record.exc_info or record.exc_info[0] is None:
        return {}
    _, exc, tb = record.exc_info
    out = {"exc_type": type(exc).__name__, "exc_message": redact.scrub_text(str(exc))}
    frames = traceback.extract_tb(tb) if tb is not None else []
    if frames:
        last = frames[-1]
        out["exc_where"] = f"{os.path.basename(last.filename)}:{last.lineno} in {last.name}"
    return out


def _timestamp(record: logging.LogRecord) -> str:
    moment = datetime.fromtimestamp(record.created, tz=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


class JsonFormatter(logging.Formatter):
    """One JSON object per line; reserved keys win, a clashing extra field gets a ``_`` suffix."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": _timestamp(record),
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": redact.scrub_text(record.getMessage()),
        }
        for key, value in {**_fields(record), **_exception(record)}.items():
            out[key if key not in out else f"{key}_"] = value
        out.update(_trace_ids())  # after scrubbing: a trace id is 32 hex digits, like a trx
        return redact.mask_known(json.dumps(out, ensure_ascii=False, separators=(",", ":")))


class TextFormatter(logging.Formatter):
    """``ts LEVEL logger event key=value ...`` for people reading a terminal."""

    def format(self, record: logging.LogRecord) -> str:
        parts = [
            _timestamp(record),
            f"{record.levelname:<7}",
            record.name,
            record.getMessage(),
        ]
        for key, value in {**_fields(record), **_exception(record)}.items():
            shown = json.dumps(value, ensure_ascii=False) if not isinstance(value, str) else value
            parts.append(f"{key}={json.dumps(shown) if ' ' in shown else shown}")
        line = redact.scrub_text(" ".join(parts))
        ids = _trace_ids()
        if ids:
            line += f" trace_id={ids['trace_id']} span_id={ids['span_id']}"
        return line


def setup_logging(
    fmt: Literal["json", "text"] = "json",
    level: str = "INFO",
    stream: IO[str] | None = None,
) -> logging.Handler:
    """Route every log record (ours and libraries') through one handler on the root logger.

    Idempotent: a handler installed by an earlier call is replaced, not duplicated.
    """
    handler = logging.StreamHandler(stream if stream is not None else sys.stdout)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    handler.set_name("topup_guard")
    root = logging.getLogger()
    for old in [h for h in root.handlers if h.get_name() == "topup_guard"]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    return handler


_TOPUP_LEVELS = {
    Outcome.SUCCEEDED: logging.INFO,
    Outcome.DRY_RUN: logging.INFO,
    Outcome.FAILED: logging.ERROR,
    Outcome.UNCONFIRMED: logging.ERROR,  # someone must check the account: money may be spent
}


# A transfer's state as a log level: in doubt is worth a look, unconfirmed needs a person.
_TRANSFER_LEVELS = {
    "succeeded": logging.INFO,
    "dry_run": logging.INFO,
    "pending": logging.WARNING,
    "unknown": logging.WARNING,
    "failed": logging.WARNING,
    "unconfirmed": logging.ERROR,
}


class LogSink:
    """An ``EventSink`` that writes each engine event as one log line with a stable name."""

    def __init__(self, logger: logging.Logger | None = None) -> None:
        self._log = logger or logging.getLogger("topup_guard.events")
        self._conditions: dict[str, str] = {}

    def emit(self, event: Event) -> None:
        if isinstance(event, PollCompleted):
            if self._log.isEnabledFor(logging.DEBUG):  # every poll: skip building unused fields
                self._log.debug("poll", extra=_poll_fields(event))
        elif isinstance(event, PollFailed):
            self._log.warning(
                "poll_failed", extra={"error_type": event.error_type, "error": event.message}
            )
        elif isinstance(event, TopUpFinished):
            self._log.log(
                _TOPUP_LEVELS[event.outcome],
                f"topup_{event.outcome.value}",
                extra=_topup_fields(event),
            )
        elif isinstance(event, ConditionsChanged):
            self._conditions_changed(event)
        elif isinstance(event, TransferFinished):
            self._log.log(
                _TRANSFER_LEVELS.get(event.state, logging.WARNING),
                f"transfer_{event.state}",
                extra=_transfer_fields(event),
            )
        elif isinstance(event, FleetCycle):
            if self._log.isEnabledFor(logging.DEBUG):  # every cycle, like every poll
                self._log.debug(
                    "fleet_cycle",
                    extra={
                        "accounts": len(event.balances),
                        "transfers": event.transfers,
                        "list_calls": event.list_calls,
                        "duration_s": round(event.duration_s, 4),
                    },
                )
        elif isinstance(event, Started):
            extra = {
                "dry_run": event.dry_run,
                "coordination": event.coordination,
                "policy": dict(event.policy),
            }
            self._log.info("guard_started", extra=extra)
        elif isinstance(event, Stopped):
            self._log.info("guard_stopped", extra={"reason": event.reason})

    def _conditions_changed(self, event: ConditionsChanged) -> None:
        active = {c.value: detail for c, detail in event.active.items()}
        for name, detail in active.items():
            if name not in self._conditions:
                self._log.warning("condition_started", extra={"condition": name, "detail": detail})
        for name, detail in self._conditions.items():
            if name not in active:
                self._log.info("condition_ended", extra={"condition": name, "detail": detail})
        self._conditions = active


def _poll_fields(event: PollCompleted) -> dict[str, object]:
    decision, forecast = event.decision, event.forecast
    fields: dict[str, object] = {
        "balance": event.balance.value,
        "auto_reload": event.balance.auto_reload,
        "duration_s": round(event.duration_s, 3),
        "poll_delay_s": round(event.poll_delay_s, 3),
        "action": decision.action.value,
        "reason": decision.reason,
        "count": decision.count,
        "blocked_by": decision.blocked_by,
        "next_poll_in": decision.next_poll_in,
    }
    if event.account:
        fields["account"] = event.account
    if forecast is not None:
        fields.update(
            rate=forecast.rate,
            rate_short=forecast.rate_short,
            rate_long=forecast.rate_long,
            time_to_exhaustion_s=forecast.time_to_exhaustion,
            confidence=forecast.confidence,
        )
    return fields


def _transfer_fields(event: TransferFinished) -> dict[str, object]:
    """A transfer names its subaccount: ``account`` (the key) and, when known, its name."""
    return {
        "account": event.account,
        "account_name": event.name,
        "transfer_id": event.transfer_id,
        "state": event.state,
        "amount": event.amount,
        "reference": event.reference,
        "detail": event.detail,
        "settled_late": event.settled_late,
    }


def _topup_fields(event: TopUpFinished) -> dict[str, object]:
    return {
        "attempt_id": event.attempt_id,
        "outcome": event.outcome.value,
        "balance_before": event.balance_before,
        "expected_amount": event.expected_amount,
        "credited": event.credited,
        "balance_after": event.balance_after,
        "reason": event.reason,
        "rate": event.rate,
        "time_to_exhaustion_s": event.time_to_exhaustion,
        "detail": event.detail,
        "action_needed": event.action_needed,
        "requests": event.requests,
        "evidence": event.evidence,
    }
