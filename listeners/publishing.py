"""Publishers the container provides: ``KafkaPublisher.send`` and ``RabbitPublisher.publish``.

Values are encoded by the codec (pydantic models, dataclasses and dicts as JSON, ``str``/``bytes`` as
they are). Both return once the broker confirmed the message. They start their transport on first use,
so an application that only publishes needs no listener on that transport.

``delay=`` (seconds) holds a message back: it is delivered no earlier than that, on every transport.
Kafka writes it to ``<topic>-delay``, which listeners of the topic consume with pause-until-due
(:mod:`listeners.kafka.delay`); RabbitMQ routes it through a TTL queue per (exchange, delay) that
dead-letters it to the exchange (:mod:`listeners.rabbit.delay`); the embedded broker schedules it on
its clock. ``None`` or a delay <= 0 publishes at once.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from typing import Any, Protocol

from listeners.codec import Codec
from listeners.message import HeaderInput, Outgoing, header_pairs
from listeners.metrics.messages import MessageMetrics
from listeners.spec import TransportKind
from listeners.tracing.spans import MessageTracing
from listeners.transport.base import Envelope, PublishReceipt, Transport


class TransportSource(Protocol):
    """Gives a started transport of a kind (the application's transport registry)."""

    async def started(self, kind: TransportKind) -> Transport: ...


def encode_key(key: str | bytes | None) -> bytes | None:
    """Kafka keys as bytes; ``str`` is UTF-8."""
    return key.encode("utf-8") if isinstance(key, str) else key


class _Publisher:
    kind: TransportKind

    def __init__(
        self,
        transports: TransportSource,
        codec: Codec,
        tracing: MessageTracing | None = None,
        metrics: MessageMetrics | None = None,
    ) -> None:
        self._transports = transports
        self._codec = codec
        self._tracing = tracing
        self._metrics = metrics

    async def _publish(self, envelope: Envelope) -> PublishReceipt:
        """Publish one envelope; with tracing or metrics on, through :meth:`_instrumented`."""
        transport = await self._transport()
        if self._tracing is None and self._metrics is None:
            return await transport.publish(envelope)
        return await self._instrumented(transport, envelope)

    async def _instrumented(self, transport: Transport, envelope: Envelope) -> PublishReceipt:
        """In a ``send`` span carrying its trace context when tracing is on; counted in
        ``messaging.client.sent.messages`` when metrics are on."""
        tracing, metrics = self._tracing, self._metrics
        try:
            if tracing is None:
                receipt = await transport.publish(envelope)
            else:
                with tracing.send(
                    self.kind, envelope.destination, envelope.headers, routing_key=envelope.routing_key,
                    key=envelope.key, partition=envelope.partition,
                ) as headers:  # fmt: skip
                    receipt = await transport.publish(replace(envelope, headers=headers))
        except Exception as error:
            if metrics is not None:
                metrics.count_sent(self.kind, envelope.destination, 1, error)
            raise
        if metrics is not None:
            metrics.count_sent(self.kind, envelope.destination)
        return receipt

    async def _publish_many(self, envelopes: list[Envelope]) -> list[PublishReceipt]:
        transport = await self._transport()
        tracing, metrics = self._tracing, self._metrics
        if tracing is None and metrics is None:
            return await transport.publish_many(envelopes)
        try:
            if tracing is None:
                receipts = await transport.publish_many(envelopes)
            else:
                with tracing.send_many(self.kind, envelopes) as traced:
                    receipts = await transport.publish_many(traced)
        except Exception as error:
            if metrics is not None and envelopes:
                metrics.count_sent(self.kind, envelopes[0].destination, len(envelopes), error)
            raise
        if metrics is not None and envelopes:
            metrics.count_sent(self.kind, envelopes[0].destination, len(envelopes))
        return receipts

    def _envelope(
        self,
        destination: str,
        value: Any,
        *,
        key: bytes | None = None,
        routing_key: str = "",
        headers: HeaderInput = None,
        partition: int | None = None,
        delay: float | None = None,
    ) -> Envelope:
        body, content_type = self._codec.encode(value)
        pairs = header_pairs(headers) if headers else ()
        # Positional: keyword arguments cost a measurable share of a pipelined send (field order of
        # Envelope: destination, body, key, routing_key, headers, partition, content_type, delay).
        return Envelope(destination, body, key, routing_key, pairs, partition, content_type, delay)

    async def _transport(self) -> Transport:
        return await self._transports.started(self.kind)


class KafkaPublisher(_Publisher):
    """Sends to Kafka topics (Spring's ``KafkaTemplate``)."""

    kind: TransportKind = "kafka"

    async def send(
        self,
        topic: str,
        value: Any,
        *,
        key: str | bytes | None = None,
        headers: HeaderInput = None,
        partition: int | None = None,
        delay: float | None = None,
    ) -> PublishReceipt:
        """Send ``value`` to ``topic`` and return the partition and offset it was written at.

        ``delay`` (seconds) holds the record back until it is due. On Kafka it is written to
        ``<topic>-delay`` (the receipt names that topic) and handed to the topic's listeners, in
        every group, as a first delivery of ``topic`` once due; consumers outside this framework do
        not see it. ``<topic>-delay`` must exist (``listeners.kafka.provisioning.enabled`` creates
        it as wide as ``topic``), else :class:`~listeners.exceptions.TransportError` says so.
        """
        envelope = self._envelope(
            topic, value, key=encode_key(key), headers=headers, partition=partition, delay=delay
        )
        return await self._publish(envelope)

    async def send_many(self, topic: str, values: Iterable[Any]) -> list[PublishReceipt]:
        """Send many values to ``topic``, pipelined, returning once all are confirmed (in order).

        Items may be :class:`~listeners.message.Outgoing` to give each its key and headers.
        """
        envelopes = [
            self._envelope(topic, item.value, key=encode_key(item.key), headers=item.headers)
            if isinstance(item, Outgoing)
            else self._envelope(topic, item)
            for item in values
        ]
        return await self._publish_many(envelopes)


class RabbitPublisher(_Publisher):
    """Publishes to RabbitMQ exchanges (Spring's ``RabbitTemplate``)."""

    kind: TransportKind = "rabbit"

    async def publish(
        self,
        exchange: str,
        routing_key: str,
        value: Any,
        *,
        headers: HeaderInput = None,
        delay: float | None = None,
    ) -> PublishReceipt:
        """Publish ``value`` to ``exchange`` (``""`` is the default exchange) with ``routing_key``.

        A message no queue is bound for raises :class:`~listeners.exceptions.UnroutableError`.
        ``delay`` (seconds, whole milliseconds rounded up) holds it back in the delay queue
        ``listeners.delay.<exchange>.<ms>`` (declared on first use; ``exchange`` must exist, else
        :class:`~listeners.exceptions.TransportError`), then RabbitMQ routes it to ``exchange`` with
        ``routing_key``. Each distinct delay is one queue: use a few. Unroutable when it becomes due,
        it is dropped by the broker (no error reaches the publisher): bind the queue first.
        """
        envelope = self._envelope(exchange, value, routing_key=routing_key, headers=headers, delay=delay)
        return await self._publish(envelope)

    async def publish_many(
        self, exchange: str, routing_key: str, values: Iterable[Any]
    ) -> list[PublishReceipt]:
        """Publish many values, pipelined on one confirm channel; returns once every one is confirmed.

        Items may be :class:`~listeners.message.Outgoing` to give each its own headers. One
        unroutable or refused message raises after the others were awaited.
        """
        envelopes = [
            self._envelope(exchange, item.value, routing_key=routing_key, headers=item.headers)
            if isinstance(item, Outgoing)
            else self._envelope(exchange, item, routing_key=routing_key)
            for item in values
        ]
        return await self._publish_many(envelopes)
