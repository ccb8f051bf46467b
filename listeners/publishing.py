"""Publishers the container provides: ``KafkaPublisher.send`` and ``RabbitPublisher.publish``.

Values are encoded by the codec (pydantic models, dataclasses and dicts as JSON, ``str``/``bytes`` as
they are). Both return once the broker confirmed the message. They start their transport on first use,
so an application that only publishes needs no listener on that transport.
"""

from __future__ import annotations

from typing import Any, Protocol

from listeners.codec import Codec
from listeners.message import HeaderInput, header_pairs
from listeners.spec import TransportKind
from listeners.transport.base import Envelope, PublishReceipt, Transport


class TransportSource(Protocol):
    """Gives a started transport of a kind (the application's transport registry)."""

    async def started(self, kind: TransportKind) -> Transport: ...


def encode_key(key: str | bytes | None) -> bytes | None:
    """Kafka keys as bytes; ``str`` is UTF-8."""
    return key.encode("utf-8") if isinstance(key, str) else key


class _Publisher:
    kind: TransportKind

    def __init__(self, transports: TransportSource, codec: Codec) -> None:
        self._transports = transports
        self._codec = codec

    async def _publish(
        self,
        destination: str,
        value: Any,
        *,
        key: bytes | None = None,
        routing_key: str = "",
        headers: HeaderInput = None,
        partition: int | None = None,
        delay: float | None = None,
    ) -> PublishReceipt:
        body, content_type = self._codec.encode(value)
        envelope = Envelope(
            destination=destination,
            body=body,
            key=key,
            routing_key=routing_key,
            headers=header_pairs(headers),
            partition=partition,
            content_type=content_type,
            delay=delay,
        )
        transport = await self._transports.started(self.kind)
        return await transport.publish(envelope)


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

        ``delay`` (seconds) holds the record back until it is due; only the embedded broker supports
        it in this version.
        """
        return await self._publish(
            topic, value, key=encode_key(key), headers=headers, partition=partition, delay=delay
        )


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
        ``delay`` (seconds) is supported by the embedded broker only in this version.
        """
        return await self._publish(exchange, value, routing_key=routing_key, headers=headers, delay=delay)
