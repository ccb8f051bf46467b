"""Confirmed, mandatory, persistent publishing on one channel; a returned message is an error."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractExchange

from listeners.exceptions import TransportUnavailableError
from listeners.rabbit.amqp import table_from_header_pairs
from listeners.rabbit.connection import RabbitConnection
from listeners.rabbit.errors import translate
from listeners.retry.delayed import is_delayed
from listeners.transport.base import Envelope, PublishReceipt


class ConfirmedPublisher:
    """Publishes with publisher confirms on; awaits each confirm, pipelines many at once.

    ``mandatory`` is always set: a message no queue is bound for comes back and raises
    :class:`~listeners.exceptions.UnroutableError` instead of vanishing. Messages are persistent and
    carry the AMQP ``timestamp`` of their publish unless ``properties`` bring one.
    A channel the broker closed (e.g. publishing to a missing exchange) is replaced on next use.
    """

    def __init__(self, connection: RabbitConnection, timeout: float) -> None:
        self._connection = connection
        self._timeout = timeout
        self._channel: AbstractChannel | None = None
        self._exchanges: dict[str, AbstractExchange] = {}
        self._opening = asyncio.Lock()

    async def publish(
        self, envelope: Envelope, properties: Mapping[str, Any] | None = None
    ) -> PublishReceipt:
        """Publish and await the confirm. ``properties``: further AMQP properties (``aio_pika.Message``
        arguments, e.g. ``message_id``) to keep when republishing a consumed message."""
        if is_delayed(envelope.delay):  # RabbitTransport sends those through listeners.rabbit.delay
            raise TransportUnavailableError("a delayed publish must go through its delay queue")
        exchange = await self._exchange(envelope.destination)
        message = aio_pika.Message(
            envelope.body,
            headers=table_from_header_pairs(envelope.headers) or None,
            content_type=envelope.content_type,
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            # When it was sent (whole seconds in AMQP): consumers' time-lag metrics read it.
            **{"timestamp": datetime.now(UTC), **(properties or {})},
        )
        action = f"publish to exchange {envelope.destination!r} with routing key {envelope.routing_key!r}"
        try:
            await exchange.publish(message, envelope.routing_key, mandatory=True, timeout=self._timeout)
        except Exception as error:
            raise translate(error, action) from error
        return PublishReceipt(envelope.destination)

    async def publish_many(self, envelopes: list[Envelope]) -> list[PublishReceipt]:
        """All published at once on the confirm channel; every confirm awaited before an error is raised."""
        results = await asyncio.gather(
            *(self.publish(envelope) for envelope in envelopes), return_exceptions=True
        )
        for result in results:
            if isinstance(result, BaseException):
                raise result
        return [result for result in results if isinstance(result, PublishReceipt)]

    async def close(self) -> None:
        if self._channel is not None and not self._channel.is_closed:
            await self._channel.close()
        self._channel = None

    async def _exchange(self, name: str) -> AbstractExchange:
        channel = await self._open()
        exchange = self._exchanges.get(name)
        if exchange is None:
            exchange = (
                channel.default_exchange if name == "" else await channel.get_exchange(name, ensure=False)
            )
            self._exchanges[name] = exchange
        return exchange

    async def _open(self) -> AbstractChannel:
        async with self._opening:
            if self._channel is None or self._channel.is_closed:
                self._exchanges.clear()
                self._channel = await self._connection.channel(publisher_confirms=True, on_return_raises=True)
            return self._channel
