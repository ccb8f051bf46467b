"""The application's metrics instruments, lag polling and HTTP endpoints, started and stopped together.

Everything here is optional: without ``listeners.metrics.enabled`` (or a ``meter_provider`` of the
container's own) no instrument exists and nothing polls; without ``listeners.server.port`` no server
listens.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any

from listeners.clock import Clock
from listeners.metrics.lag import LagPoller
from listeners.metrics.names import METER_NAME
from listeners.metrics.observed import ListenerObserver
from listeners.metrics.prometheus import metrics_page, require_prometheus
from listeners.metrics.setup import shutdown_owned
from listeners.runtime.container import ListenerContainer
from listeners.server.endpoints import EndpointServer, MetricsPage
from listeners.server.health import readiness
from starter.settings import ApplicationSettings

log = logging.getLogger("listeners")


class Observability:
    """Owns the listener observer, the lag poller and the endpoint server of one application run."""

    def __init__(
        self,
        container: Any,
        settings: ApplicationSettings,
        listeners: Callable[[], Iterable[ListenerContainer]],
        started: Callable[[], bool],
    ) -> None:
        self._container = container
        self._settings = settings.listeners
        self._listeners = listeners
        self._started = started
        self._provider: Any = None
        self._poller: LagPoller | None = None
        self._server: EndpointServer | None = None

    @property
    def server_port(self) -> int | None:
        """The port the endpoints listen on (the one picked for port 0), None without a server."""
        return self._server.port if self._server is not None else None

    async def start(self) -> None:
        """Build the meter provider (failing now on bad config), register the listener instruments,
        start lag polling and the endpoint server."""
        provider = self._provider = self._container.meter_provider()
        server = self._settings.server
        if provider is not None:
            clock: Clock = self._container.clock()
            ListenerObserver(provider.get_meter(METER_NAME), self._listeners, clock)
            self._poller = LagPoller(self._subscriptions, self._settings.metrics.lag_interval)
            self._poller.start()
        if server.port is not None:
            page: MetricsPage | None = None
            if provider is not None:
                require_prometheus()
                page = lambda: metrics_page(provider)  # noqa: E731
            self._server = EndpointServer(self._readiness, page, server.host, server.port)
            await self._server.start()
            log.info("endpoints on http://%s:%d (/health/live, /health/ready, /metrics)",
                     server.host, self._server.port)  # fmt: skip

    async def close(self) -> None:
        """Stop polling and serving; shut down a meter provider built from the settings."""
        if self._poller is not None:
            await self._poller.close()
            self._poller = None
        if self._server is not None:
            await self._server.close()
            self._server = None
        provider, self._provider = self._provider, None
        shutdown_owned(provider)

    def _readiness(self) -> Any:
        return readiness(self._started(), list(self._listeners()))

    def _subscriptions(self) -> list[object]:
        return [
            listener.subscription
            for listener in self._listeners()
            if listener.state == "running" and listener.subscription is not None
        ]
