"""The spans of messages: ``send <destination>`` (PRODUCER) and ``process <destination>`` (CONSUMER).

Attributes follow the OpenTelemetry messaging semantic conventions. The process span's parent is the
context the message carries (or, with ``link: true``, a new trace linked to it), and the handler runs
inside it, so the handler's own spans and sends nest under it; a failed attempt ends its span with
``error.type``. Retries run as new process spans under the same parent, so a message retried and then
dead-lettered reads as one trace (the retried message and the dead letter keep the original
``traceparent``). The republish of a failed message to a retry destination or to the dead letters is
a ``send`` span under the failed attempt's process span (see :func:`settling_sends`).

Every handled message pays for its span, so the process step is written for speed: one SDK
``start_span`` with all attributes in one dict (the constant ones built once per destination), the
context attached and detached directly rather than through ``start_as_current_span``'s two context
managers, no context extraction for a message without ``traceparent``, and outcome attributes only
on a recording span.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import replace
from typing import Any, NamedTuple

from opentelemetry import context as context_api
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import Link, Span, SpanKind, Status, StatusCode, Tracer

from listeners.message import HeaderPairs, Message
from listeners.outcome import ACK, Ack, DeadLetter, Outcome, Retry
from listeners.runtime.pipeline import Handler
from listeners.spec import TransportKind
from listeners.tracing.propagation import extract, inject
from listeners.transport.base import Envelope

SYSTEMS: dict[TransportKind, str] = {"kafka": "kafka", "rabbit": "rabbitmq"}

_CONSUMER = SpanKind.CONSUMER
_PRODUCER = SpanKind.PRODUCER
_attach = context_api.attach
_detach = context_api.detach
_get_current = context_api.get_current
_in_context = trace.set_span_in_context


class _Destination(NamedTuple):
    """What every process span of one destination (and group) shares."""

    name: str
    attributes: dict[str, Any]


class _Failure(NamedTuple):
    """The latest failed attempt handled in this task: its message and its process span's context."""

    message: Message
    tracing: MessageTracing
    context: Context


_FAILED: ContextVar[_Failure | None] = ContextVar("listeners_failed_attempt", default=None)
"""Set by the process step when an attempt fails, in the task that runs the pipeline; the listener
container settles the message (publishes it to a retry destination or the dead letters) in that same
task right after, where :func:`settling_sends` reads it."""


class MessageTracing:
    """Creates the spans of one application's sends and handled messages."""

    def __init__(self, tracer: Tracer, *, link: bool = False) -> None:
        self._tracer = tracer
        self._link = link
        self._destinations: dict[tuple[str, str, str | None], _Destination] = {}

    async def __call__(self, message: Message, call_next: Handler) -> Outcome:
        """The outermost pipeline step: the message's process span around everything else."""
        if message.batch:
            span = self._batch_span(message)
        else:
            parent = extract(message.headers)
            links: tuple[Link, ...] = ()
            if parent is not None and self._link:
                links = _links((parent,))
                parent = None
            destination = self._destinations.get((message.transport, message.destination, message.group_id))
            if destination is None:
                destination = self._destination(message)
            span = self._tracer.start_span(
                destination.name,
                parent,
                _CONSUMER,
                _process_attributes(message, destination.attributes),
                links,
                record_exception=False,
                set_status_on_exception=False,
            )
        token = _attach(_in_context(span))
        try:
            outcome = await call_next(message)
            if outcome is not ACK:
                if isinstance(outcome, Retry | DeadLetter):
                    _FAILED.set(_Failure(message, self, _get_current()))
                    if span.is_recording():
                        _mark_failed(span, outcome.error)
                elif isinstance(outcome, Ack) and outcome.skipped is not None and span.is_recording():
                    span.set_attribute("listeners.outcome", outcome.skipped)
            return outcome
        except Exception as error:
            if span.is_recording():
                span.record_exception(error)
                _mark_failed(span, error)
            _FAILED.set(_Failure(message, self, _get_current()))
            raise
        finally:
            _detach(token)
            span.end()

    def _batch_span(self, message: Message) -> Span:
        """One span for the batch, in a new trace linked to each record's context."""
        return self._tracer.start_span(
            f"process {message.destination}",
            None,
            _CONSUMER,
            process_attributes(message),
            _links(extract(record.headers) for record in message.batch),
            record_exception=False,
            set_status_on_exception=False,
        )

    def _destination(self, message: Message) -> _Destination:
        attributes: dict[str, Any] = {
            "messaging.system": SYSTEMS[message.transport],
            "messaging.operation.type": "process",
            "messaging.operation.name": "process",
            "messaging.destination.name": message.destination,
        }
        if message.transport == "kafka" and message.group_id is not None:
            attributes["messaging.consumer.group.name"] = message.group_id
        destination = _Destination(f"process {message.destination}", attributes)
        self._destinations[(message.transport, message.destination, message.group_id)] = destination
        return destination

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
        span = self._tracer.start_span(
            f"send {destination or routing_key}",
            kind=_PRODUCER,
            attributes=send_attributes(kind, destination, routing_key, key, partition),
        )
        try:
            yield inject(headers, _in_context(span))
        except Exception as error:
            _mark_failed(span, error)
            raise
        finally:
            span.end()

    @contextmanager
    def send_many(
        self,
        kind: TransportKind,
        envelopes: list[Envelope],
        *,
        parent: Context | None = None,
        carry: bool = True,
    ) -> Iterator[list[Envelope]]:
        """One ``send`` span per envelope (siblings, not nested) around a pipelined publish, under
        ``parent`` (default: the current context); yields the envelopes carrying their span's context,
        or unchanged with ``carry=False``."""
        spans = []
        traced = []
        for envelope in envelopes:
            span = self._tracer.start_span(
                f"send {envelope.destination or envelope.routing_key}",
                parent,
                kind=_PRODUCER,
                attributes=send_attributes(
                    kind, envelope.destination, envelope.routing_key, envelope.key, envelope.partition
                ),
            )
            spans.append(span)
            if carry:
                envelope = replace(envelope, headers=inject(envelope.headers, _in_context(span)))
            traced.append(envelope)
        try:
            yield traced
        except Exception as error:
            for span in spans:
                _mark_failed(span, error)
            raise
        finally:
            for span in spans:
                span.end()


@contextmanager
def settling_sends(
    kind: TransportKind, envelopes: list[Envelope], message: Message | None = None
) -> Iterator[None]:
    """``send`` spans around republishing a failed message (to a retry destination or the dead
    letters) while the listener container settles it: children of the failed attempt's process span,
    in the message's trace. The envelopes keep the message's own ``traceparent``, so the next attempt's
    process span is again a child of the original send.

    ``message`` is the settled delivery's message; without it, an envelope matches the failed attempt
    when it carries the attempt's own body (the same bytes object). Outside a settle (tracing off, a
    replay), nothing happens.
    """
    failure = _FAILED.get()
    if failure is None or not _matches(failure.message, envelopes, message):
        yield
        return
    with failure.tracing.send_many(kind, envelopes, parent=failure.context, carry=False):
        yield


def failed_attempt_span(message: Message) -> trace.SpanContext | None:
    """The span context of ``message``'s failed attempt while the listener container decides and
    settles what becomes of it (its process span has ended by then), else None."""
    failure = _FAILED.get()
    if failure is None or failure.message is not message:
        return None
    return trace.get_current_span(failure.context).get_span_context()


def _matches(failed: Message, envelopes: list[Envelope], message: Message | None) -> bool:
    if message is not None:
        return message is failed
    bodies = [record.body for record in failed.records]
    return all(any(envelope.body is body for body in bodies) for envelope in envelopes)


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
    constant: dict[str, Any] = {
        "messaging.system": SYSTEMS[message.transport],
        "messaging.operation.type": "process",
        "messaging.operation.name": "process",
        "messaging.destination.name": message.destination,
    }
    if message.transport == "kafka" and message.group_id is not None:
        constant["messaging.consumer.group.name"] = message.group_id
    return _process_attributes(message, constant)


def _process_attributes(message: Message, constant: dict[str, Any]) -> dict[str, Any]:
    attributes = constant.copy()
    attributes["messaging.message.attempt"] = message.attempt
    if message.transport == "kafka":
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


def _links(contexts: Iterator[Context | None] | tuple[Context | None, ...]) -> tuple[Link, ...]:
    links = []
    for context in contexts:
        if context is not None:
            linked = trace.get_current_span(context).get_span_context()
            if linked.is_valid:
                links.append(Link(linked))
    return tuple(links)


def _mark_failed(span: Span, error: BaseException) -> None:
    span.set_attribute("error.type", _type_name(error))
    span.set_status(Status(StatusCode.ERROR, str(error)))


def _type_name(error: BaseException) -> str:
    cls = type(error)
    return cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"
