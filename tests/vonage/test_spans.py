"""Every Vonage call is one client span: route-template name, method, path, host, status only."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from tests.simctl import sim_post
from topup_guard.config import DEMO_API_KEY, DEMO_API_SECRET, DEMO_TRX
from topup_guard.errors import ServerError
from topup_guard.sim import RunningSimulator
from topup_guard.vonage.client import VonageClient
from topup_guard.vonage.spans import route


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
async def client(
    sim: RunningSimulator, exporter: InMemorySpanExporter
) -> AsyncIterator[VonageClient]:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("test")
    async with VonageClient(
        DEMO_API_KEY, DEMO_API_SECRET, rest_url=sim.url, api_url=sim.url, tracer=tracer
    ) as vonage:
        yield vonage
    provider.shutdown()


def _flat(span: ReadableSpan) -> str:
    return f"{span.name} {dict(span.attributes or {})} {span.events} {span.status}"


async def test_a_balance_read_is_one_client_span_with_http_attributes(
    client: VonageClient, exporter: InMemorySpanExporter, sim: RunningSimulator
) -> None:
    await client.get_balance()
    (span,) = exporter.get_finished_spans()
    assert span.name == "vonage GET /account/get-balance"
    assert span.kind is SpanKind.CLIENT
    assert dict(span.attributes or {}) == {
        "http.request.method": "GET",
        "url.path": "/account/get-balance",
        "server.address": "127.0.0.1",
        "server.port": sim.port,
        "http.response.status_code": 200,
    }


async def test_a_failed_top_up_span_names_the_error_class_and_never_the_trx(
    client: VonageClient, exporter: InMemorySpanExporter, sim: RunningSimulator
) -> None:
    await sim_post(sim, "/_sim/faults", {"endpoint": "top-up", "kind": "error_500_before"})
    with pytest.raises(ServerError):
        await client.top_up(DEMO_TRX)
    (span,) = exporter.get_finished_spans()
    assert span.name == "vonage POST /account/top-up"
    assert span.status.status_code is StatusCode.ERROR
    assert span.status.description == "ServerError"
    assert (span.attributes or {})["error.type"] == "ServerError"
    assert (span.attributes or {})["http.response.status_code"] == 500
    assert span.events == ()  # no exception event: it would carry a message and a traceback
    for secret in (DEMO_TRX, DEMO_API_SECRET, "Authorization"):
        assert secret not in _flat(span)


async def test_query_parameters_and_ids_stay_out_of_span_names_and_paths(
    client: VonageClient, exporter: InMemorySpanExporter
) -> None:
    await client.list_balance_transfers("2026-01-01T00:00:00Z")
    await client.list_secrets()
    transfers, secrets = exporter.get_finished_spans()
    assert transfers.name == "vonage GET /accounts/{api_key}/balance-transfers"
    assert (transfers.attributes or {})["url.path"] == f"/accounts/{DEMO_API_KEY}/balance-transfers"
    assert "2026" not in _flat(transfers)
    assert secrets.name == "vonage GET /accounts/{api_key}/secrets"


def test_route_templates_replace_identifiers() -> None:
    assert route("/accounts/abc/secrets/ad6d") == "/accounts/{api_key}/secrets/{secret_id}"
    assert (
        route("/accounts/abc/subaccounts/k2") == "/accounts/{api_key}/subaccounts/{subaccount_key}"
    )
    assert route("/account/top-up") == "/account/top-up"
