"""The application's HTTP endpoints: ``/health/live``, ``/health/ready`` and ``/metrics``."""

from __future__ import annotations

import json
from collections.abc import Callable

from listeners.server.health import ReadinessCheck
from listeners.server.http import HttpServer, Response

MetricsPage = Callable[[], tuple[bytes, str]]
"""Renders the metrics page now: ``(body, content type)``."""

JSON = "application/json"


class EndpointServer:
    """Serves the health endpoints, and ``/metrics`` when ``metrics`` is given (else 404 saying how to
    turn it on)."""

    def __init__(self, ready: ReadinessCheck, metrics: MetricsPage | None, host: str, port: int) -> None:
        self._ready = ready
        self._metrics = metrics
        self._http = HttpServer(
            {"/health/live": self._live, "/health/ready": self._readiness, "/metrics": self._metrics_page},
            host,
            port,
        )

    @property
    def port(self) -> int:
        return self._http.port

    async def start(self) -> None:
        await self._http.start()

    async def close(self) -> None:
        await self._http.close()

    async def _live(self) -> Response:
        return Response(200, b'{"status":"UP"}', JSON)

    async def _readiness(self) -> Response:
        readiness = self._ready()
        body = json.dumps(readiness.as_json()).encode()
        return Response(200 if readiness.ready else 503, body, JSON)

    async def _metrics_page(self) -> Response:
        if self._metrics is None:
            return Response(404, b"metrics are off: set listeners.metrics.enabled: true\n")
        body, content_type = self._metrics()
        return Response(200, body, content_type)
