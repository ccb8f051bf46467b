"""Building the tracer provider from ``listeners.tracing``, or using the application's own."""

from __future__ import annotations

from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SimpleSpanProcessor
from opentelemetry.sdk.trace.sampling import ALWAYS_ON, ParentBased, Sampler, TraceIdRatioBased

from listeners.exceptions import ConfigError
from listeners.tracing.spans import MessageTracing

OWNED = "_listeners_owned"
"""Marks a provider this module created, which the application shuts down (flushes) on stop."""
TRACER_NAME = "listeners"


def create_tracer_provider(settings: Any) -> Any:
    """The provider for ``listeners.tracing`` (a TracingSettings): None when disabled; the one the
    application installed globally if it did; else a new SDK provider with the configured exporter."""
    if not settings.enabled:
        return None
    installed = trace.get_tracer_provider()
    if isinstance(installed, TracerProvider):
        return installed
    resource = Resource.create({"service.name": settings.service_name or "listeners"})
    provider = TracerProvider(resource=resource, sampler=ParentBased(_root_sampler(settings.sample_ratio)))
    if settings.exporter == "console":
        provider.add_span_processor(SimpleSpanProcessor(ConsoleSpanExporter()))
    elif settings.exporter == "otlp":
        provider.add_span_processor(BatchSpanProcessor(_otlp_exporter(settings.endpoint)))
    setattr(provider, OWNED, True)
    return provider


def _root_sampler(ratio: float) -> Sampler:
    """Every new trace at ratio 1 (without the ratio sampler's trace-id arithmetic), else that share."""
    return ALWAYS_ON if ratio >= 1 else TraceIdRatioBased(ratio)


def create_message_tracing(provider: Any, settings: Any) -> MessageTracing | None:
    """The spans of sends and handled messages: None without a provider (no cost at all)."""
    if provider is None:
        return None
    return MessageTracing(provider.get_tracer(TRACER_NAME), link=settings.link)


def shutdown_owned(provider: Any) -> None:
    """Flush and stop ``provider`` if this module created it (an application's own is left alone)."""
    if provider is not None and getattr(provider, OWNED, False):
        provider.shutdown()


def _otlp_exporter(endpoint: str | None) -> Any:
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import (  # type: ignore[import-not-found,unused-ignore]
            OTLPSpanExporter,
        )
    except ModuleNotFoundError:
        raise ConfigError(
            "listeners.tracing.exporter: otlp needs the OTLP exporter: pip install 'listeners[otlp]'"
        ) from None
    return OTLPSpanExporter(endpoint=endpoint) if endpoint else OTLPSpanExporter()
