"""The spans of messages: ``send <destination>`` (PRODUCER) and ``process <destination>`` (CONSUMER).

Attributes follow the OpenTelemetry messaging semantic conventions. The process span's parent is the
context the message carries (or, with ``link: true``, a new trace linked to it), and the handler runs
inside it, so the handler's own spans and sends nest under it; a failed attempt ends its span with
``error.type``. Retries run as new process spans under the same parent, so a message retried and then
dead-lettered reads as one trace (the dead letter keeps the original ``traceparent``).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

from opentelemetry import trace
from opentelemetry.trace import Link, SpanKind, Status, StatusCode, Tracer

from listeners.message import HeaderPairs, Message
from listeners.outcome import Ack, DeadLetter, Outcome, Retry
from listeners.runtime.pipeline import Handler
from listeners.spec import TransportKind
from listeners.tracing.propagation import extract, inject
from listeners.transport.base import Envelope

SYSTEMS: dict[TransportKind, str] = {"kafka": "kafka", "rabbit": "rabbitmq"}


class MessageTracing:
    """Creates the spans of one application's sends and handled messages."""

    def __init__(self, tracer: Tracer, *, link: bool = False) -> None:
        self._tracer = tracer
        self._link = link

    async def __call__(self, message: Message, call_next: Handler) -> Outcome:
        """The outermost pipeline step: the message's process span around everything else."""
        carried = extract(message.headers)
        parent = carried
        links: tuple[Link, ...] = ()
        if self._link and carried is not None:
            linked = trace.get_current_span(carried).get_span_context()
            parent = None
            links = (Link(linked),) if linked.is_valid else ()
        if message.batch:  # one span for the batch, linked to each record's context
            links = tuple(_links_of(message))
            parent = None
        with self._tracer.start_as_current_span(
            f"process {message.destination}",
            context=parent,
            kind=SpanKind.CONSUMER,
            attributes=process_attributes(message),
            links=links,
            record_exception=False,
            set_status_on_exception=False,
        ) as span:
            try:
                outcome = await call_next(message)
            except Exception as error:
                span.record_exception(error)
                span.set_attribute("error.type", _type_name(error))
                span.set_status(Status(StatusCode.ERROR, str(error)))
                raise
            _record_outcome(span, outcome)
            return outcome

    @contextmanager
    def send(
        self,
        kind: TransportKind,
        destination: str,
        headers: HeaderPairs,
        *,
        routing_key: str = "",
        key: bytes | None = None,
        partition: int | None = None,
    ) -> Iterator[HeaderPairs]:
        """A ``send <destination>`` span around a publish; yields ``headers`` carrying its context."""
        attributes = send_attributes(kind, destination, routing_key, key, partition)
        name = f"send {destination or routing_key}"
        with self._tracer.start_as_current_span(name, kind=SpanKind.PRODUCER, attributes=attributes) as span:
            try:
                yield inject(headers)
            except Exception as error:
                span.set_attribute("error.type", _type_name(error))
                span.set_status(Status(StatusCode.ERROR, str(error)))
                raise

    @contextmanager
    def send_many(self, kind: TransportKind, envelopes: list[Envelope]) -> Iterator[list[Envelope]]:
        """One ``send`` span per envelope (siblings, not nested) around a pipelined publish; yields the
        envelopes carrying their span's context."""
        spans = []
        traced = []
        for envelope in envelopes:
            span = self._tracer.start_span(
                f"send {envelope.destination or envelope.routing_key}",
                kind=SpanKind.PRODUCER,
                attributes=send_attributes(
                    kind, envelope.destination, envelope.routing_key, envelope.key, envelope.partition
                ),
            )
            spans.append(span)
            traced.append(
                replace(envelope, headers=inject(envelope.headers, trace.set_span_in_context(span)))
            )
        try:
            yield traced
        except Exception as error:
            for span in spans:
                span.set_attribute("error.type", _type_name(error))
                span.set_status(Status(StatusCode.ERROR, str(error)))
            raise
        finally:
            for span in spans:
                span.end()


def send_attributes(
    kind: TransportKind, destination: str, routing_key: str, key: bytes | None, partition: int | None
) -> dict[str, Any]:
    """The messaging attributes of a send span."""
    attributes: dict[str, Any] = {
        "messaging.system": SYSTEMS[kind],
        "messaging.operation.type": "send",
        "messaging.operation.name": "send",
        "messaging.destination.name": destination or "(default exchange)",
    }
    if kind == "rabbit":
        attributes["messaging.rabbitmq.destination.routing_key"] = routing_key
    if key is not None:
        attributes["messaging.kafka.message.key"] = key.decode("utf-8", errors="replace")
    if partition is not None:
        attributes["messaging.destination.partition.id"] = str(partition)
    return attributes


def process_attributes(message: Message) -> dict[str, Any]:
    """The messaging attributes of a process span for ``message``."""
    attributes: dict[str, Any] = {
        "messaging.system": SYSTEMS[message.transport],
        "messaging.operation.type": "process",
        "messaging.operation.name": "process",
        "messaging.destination.name": message.destination,
        "messaging.message.attempt": message.attempt,
    }
    if message.transport == "kafka":
        if message.group_id is not None:
            attributes["messaging.consumer.group.name"] = message.group_id
        if message.partition is not None:
            attributes["messaging.destination.partition.id"] = str(message.partition)
        if message.offset is not None:
            attributes["messaging.kafka.offset"] = message.offset
        if message.key is not None:
            attributes["messaging.kafka.message.key"] = message.key.decode("utf-8", errors="replace")
        if message.batch:
            attributes["messaging.batch.message_count"] = len(message.batch)
    else:
        attributes["messaging.rabbitmq.destination.routing_key"] = message.routing_key or ""
        message_id = getattr(
            getattr(getattr(message.raw, "header", None), "properties", None), "message_id", None
        )
        if message_id:
            attributes["messaging.message.id"] = str(message_id)
    return attributes


def _links_of(message: Message) -> Iterator[Link]:
    for record in message.batch:
        context = extract(record.headers)
        if context is not None:
            linked = trace.get_current_span(context).get_span_context()
            if linked.is_valid:
                yield Link(linked)


def _record_outcome(span: trace.Span, outcome: Outcome) -> None:
    if isinstance(outcome, Ack) and outcome.skipped is not None:
        span.set_attribute("listeners.outcome", outcome.skipped)
    elif isinstance(outcome, Retry | DeadLetter):
        span.set_attribute("error.type", _type_name(outcome.error))
        span.set_status(Status(StatusCode.ERROR, str(outcome.error)))


def _type_name(error: BaseException) -> str:
    cls = type(error)
    return cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"
