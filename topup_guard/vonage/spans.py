"""One OpenTelemetry client span per Vonage HTTP call, built only from what is safe to export.

A span is named after the route template (``vonage GET /account/get-balance``,
``vonage GET /accounts/{api_key}/secrets/{secret_id}``) so traces group by operation, and carries
the OpenTelemetry HTTP semantic-convention attributes ``http.request.method``, ``url.path``,
``server.address``, ``server.port`` and ``http.response.status_code``. It is built from the
method, the base URL (which the client has already checked holds no credentials, query or
fragment) and the path; query parameters travel separately and never reach it. Headers (the
``Authorization`` credential) and bodies (the ``trx`` of a top-up) are never read here at all.
Failures set ``error.type`` to the exception class name only: exception texts are safe by
design, but a span needs no more than the class to be useful.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext

from opentelemetry.trace import INVALID_SPAN, Span, SpanKind, Status, StatusCode, Tracer
from yarl import URL

from topup_guard.tracing import records

# Path segments that are identifiers, replaced by their name in the span name (low cardinality).
_ROUTE_PARAMS = (
    (re.compile(r"^(/accounts/)[^/]+"), r"\1{api_key}"),
    (re.compile(r"(/secrets/)[^/]+"), r"\1{secret_id}"),
    (re.compile(r"(/subaccounts/)[^/]+"), r"\1{subaccount_key}"),
)


def route(path: str) -> str:
    """The template of ``path``: ``/accounts/abc/secrets`` -> ``/accounts/{api_key}/secrets``."""
    for pattern, template in _ROUTE_PARAMS:
        path = pattern.sub(template, path)
    return path


def client_span(
    tracer: Tracer, method: str, base_url: str, path: str
) -> AbstractContextManager[Span]:
    """The span around one call; the caller sets the status code with :func:`set_status_code`."""
    if not records(tracer):  # spans go nowhere: no URL parsed, no attributes, no generator
        return _NO_SPAN
    return _client_span(tracer, method, base_url, path)


# nullcontext keeps no state between uses: one instance serves every call.
_NO_SPAN: AbstractContextManager[Span] = nullcontext(INVALID_SPAN)


@contextmanager
def _client_span(tracer: Tracer, method: str, base_url: str, path: str) -> Iterator[Span]:
    url = URL(base_url)
    attributes: dict[str, str | int] = {
        "http.request.method": method,
        "url.path": path.split("?", 1)[0],
        "server.address": url.host or "",
    }
    if url.port is not None:
        attributes["server.port"] = url.port
    with tracer.start_as_current_span(
        f"vonage {method} {route(path)}",
        kind=SpanKind.CLIENT,
        attributes=attributes,
        record_exception=False,  # an exception event would carry the message and a traceback
        set_status_on_exception=False,
    ) as span:
        try:
            yield span
        except BaseException as exc:
            span.set_attribute("error.type", type(exc).__name__)
            span.set_status(Status(StatusCode.ERROR, type(exc).__name__))
            raise


def set_status_code(span: Span, status: int | None) -> None:
    """Record the HTTP status when an answer arrived (none for a reset or a timeout)."""
    if status is not None and span is not INVALID_SPAN:
        span.set_attribute("http.response.status_code", status)
