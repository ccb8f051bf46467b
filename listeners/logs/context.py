"""What a log line says about its message and trace: record attributes set through ``extra`` or by
:class:`TraceContextFilter`."""

from __future__ import annotations

import logging
from typing import Any

from opentelemetry import trace

from listeners.message import Message
from listeners.tracing.spans import failed_attempt_span

CONTEXT_FIELDS = (
    "listener_id",
    "destination",
    "partition",
    "offset",
    "delivery_tag",
    "attempt",
    "trace_id",
    "span_id",
)
"""Record attributes the formatters write when a record has them, in this order."""


def message_fields(message: Message) -> dict[str, Any]:
    """``extra`` for a log line about ``message``: listener id, destination, partition and offset
    (Kafka) or delivery tag (RabbitMQ), attempt, and while its failed attempt is being settled the
    trace and span id of that attempt's process span (its span has ended, so no filter finds it)."""
    fields: dict[str, Any] = {
        "listener_id": message.listener_id,
        "destination": message.destination,
        "attempt": message.attempt,
    }
    if message.partition is not None:
        fields["partition"] = message.partition
    if message.offset is not None:
        fields["offset"] = message.offset
    tag = delivery_tag(message)
    if tag is not None:
        fields["delivery_tag"] = tag
    failed = failed_attempt_span(message)
    if failed is not None and failed.is_valid:
        fields["trace_id"] = format(failed.trace_id, "032x")
        fields["span_id"] = format(failed.span_id, "016x")
    return fields


def delivery_tag(message: Message) -> int | None:
    """The RabbitMQ delivery tag of ``message``, if its client message has one."""
    if message.transport != "rabbit" or message.raw is None:
        return None
    tag = getattr(message.raw, "delivery_tag", None)
    return tag if isinstance(tag, int) else None


class TraceContextFilter(logging.Filter):
    """Adds ``trace_id`` and ``span_id`` (hex, as W3C ``traceparent`` writes them) of the current
    OpenTelemetry span to every record that has none, so a line logged inside a message's process span
    (the handler's own lines, failures) names its trace. Put it on handlers: a filter on a logger only
    sees records logged to that very logger."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "trace_id", None) is None:
            context = trace.get_current_span().get_span_context()
            if context.is_valid:
                record.trace_id = format(context.trace_id, "032x")
                record.span_id = format(context.span_id, "016x")
        return True
