"""A local OTLP/HTTP collector over a real socket, shared by the telemetry and ``run`` tests.

It decodes what the SDK's OTLP exporters POST to ``/v1/traces`` and ``/v1/metrics`` and keeps the
raw bodies too, so a test can search every byte that left the process for a secret.
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)


class Receiver:
    """A local collector: records decoded OTLP requests; can answer slowly."""

    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay
        self.traces: list[ExportTraceServiceRequest] = []
        self.metrics: list[ExportMetricsServiceRequest] = []
        self.headers: list[dict[str, str]] = []
        self.bodies: list[bytes] = []  # every request body as received (after un-gzip)
        self.port = 0
        self._runner: web.AppRunner | None = None

    async def _traces(self, request: web.Request) -> web.Response:
        body = await request.read()  # aiohttp has already un-gzipped it
        self.headers.append(dict(request.headers))
        self.bodies.append(body)
        await asyncio.sleep(self.delay)
        self.traces.append(ExportTraceServiceRequest.FromString(body))
        return web.Response(
            body=ExportTraceServiceResponse().SerializeToString(),
            content_type="application/x-protobuf",
        )

    async def _metrics(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.bodies.append(body)
        await asyncio.sleep(self.delay)
        self.metrics.append(ExportMetricsServiceRequest.FromString(body))
        return web.Response(
            body=ExportMetricsServiceResponse().SerializeToString(),
            content_type="application/x-protobuf",
        )

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/v1/traces", self._traces)
        app.router.add_post("/v1/metrics", self._metrics)
        self._runner = web.AppRunner(app, shutdown_timeout=0.2)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self.port = self._runner.addresses[0][1]

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def spans(self) -> list[Any]:
        return [
            s
            for r in self.traces
            for rs in r.resource_spans
            for ss in rs.scope_spans
            for s in ss.spans
        ]

    def span_names(self) -> list[str]:
        return [s.name for s in self.spans()]

    def metric_names(self) -> set[str]:
        return {
            m.name
            for r in self.metrics
            for rm in r.resource_metrics
            for sm in rm.scope_metrics
            for m in sm.metrics
        }


def otlp_env(port: int, **extra: str) -> dict[str, str]:
    return {
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{port}",
        "OTEL_EXPORTER_OTLP_TIMEOUT": "1000",
        "OTEL_BSP_SCHEDULE_DELAY": "50",
        **extra,
    }
