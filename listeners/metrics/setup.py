"""Building the meter provider from ``listeners.metrics``, or using the application's own, and the
message instruments on it."""

from __future__ import annotations

from typing import Any

from opentelemetry import metrics
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.resources import Resource

from listeners.metrics.messages import MessageMetrics
from listeners.metrics.names import METER_NAME
from listeners.metrics.prometheus import REGISTRY_ATTRIBUTE, prometheus_reader

OWNED = "_listeners_owned"
"""Marks a provider this module created, which the application shuts down on stop."""


def create_meter_provider(settings: Any, server: Any) -> Any:
    """The provider for ``listeners.metrics`` (a MetricsSettings): None when disabled; the SDK provider
    the application installed globally if it did; else a new one, read by the ``/metrics`` endpoint
    when ``server.port`` (a ServerSettings) is set (ConfigError without the ``prometheus`` extra)."""
    if not settings.enabled:
        return None
    installed = metrics.get_meter_provider()
    if isinstance(installed, MeterProvider):
        return installed
    readers = []
    registry = None
    if server.port is not None:
        reader, registry = prometheus_reader()
        readers.append(reader)
    resource = Resource.create({"service.name": settings.service_name or "listeners"})
    provider = MeterProvider(resource=resource, metric_readers=readers)
    setattr(provider, OWNED, True)
    if registry is not None:
        setattr(provider, REGISTRY_ATTRIBUTE, registry)
    return provider


def create_message_metrics(provider: Any) -> MessageMetrics | None:
    """The per-message instruments: None without a provider (metrics off: no pipeline step at all)."""
    if provider is None:
        return None
    return MessageMetrics(provider.get_meter(METER_NAME))


def shutdown_owned(provider: Any) -> None:
    """Stop ``provider`` if this module created it (an application's own is left alone)."""
    if provider is not None and getattr(provider, OWNED, False):
        provider.shutdown()
