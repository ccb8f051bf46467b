"""The ``/metrics`` page in Prometheus text format, through the optional ``prometheus`` extra.

A provider built here gets a :class:`PrometheusMetricReader` on a registry of its own (so two
applications in one process, or tests, do not mix). With an application's own MeterProvider the page
shows ``prometheus_client``'s global registry, where a PrometheusMetricReader the application added
registers by default.
"""

from __future__ import annotations

from typing import Any

from listeners.exceptions import ConfigError

REGISTRY_ATTRIBUTE = "_listeners_prometheus_registry"
"""Set on a provider built here: the registry its Prometheus reader fills."""

EXTRA_HINT = "pip install 'listeners[prometheus]'"


def prometheus_reader() -> tuple[Any, Any]:
    """A new ``(PrometheusMetricReader, its CollectorRegistry)``; ConfigError without the extra."""
    try:
        from opentelemetry.exporter.prometheus import (  # type: ignore[import-not-found,unused-ignore]
            PrometheusMetricReader,
        )
        from prometheus_client import CollectorRegistry  # type: ignore[import-not-found,unused-ignore]
    except ModuleNotFoundError:
        raise ConfigError(
            f"the /metrics endpoint (listeners.metrics.enabled with listeners.server.port) needs the "
            f"Prometheus exporter: {EXTRA_HINT}"
        ) from None
    registry = CollectorRegistry(auto_describe=False)
    try:
        reader = PrometheusMetricReader(registry=registry)
    except TypeError:  # an exporter before the registry argument: it registers globally
        from prometheus_client import REGISTRY  # type: ignore[import-not-found,unused-ignore]

        reader, registry = PrometheusMetricReader(), REGISTRY
    return reader, registry


def require_prometheus() -> None:
    """ConfigError now, at startup, if the ``/metrics`` page could not be rendered."""
    try:
        import prometheus_client  # type: ignore[import-not-found,unused-ignore]  # noqa: F401
    except ModuleNotFoundError:
        raise ConfigError(f"the /metrics endpoint needs the Prometheus exporter: {EXTRA_HINT}") from None


def metrics_page(provider: Any) -> tuple[bytes, str]:
    """The Prometheus text exposition of ``provider``'s reader (collected now), and its content type.

    Runs the observable callbacks, so call it on the event loop that runs the listeners.
    """
    try:
        from prometheus_client import (  # type: ignore[import-not-found,unused-ignore]
            CONTENT_TYPE_LATEST,
            REGISTRY,
            generate_latest,
        )
    except ModuleNotFoundError:
        raise ConfigError(f"the /metrics endpoint needs the Prometheus exporter: {EXTRA_HINT}") from None
    registry = getattr(provider, REGISTRY_ATTRIBUTE, None) or REGISTRY
    return bytes(generate_latest(registry)), str(CONTENT_TYPE_LATEST)
