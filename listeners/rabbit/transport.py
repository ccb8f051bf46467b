"""RabbitTransport: a reconnecting connection, confirmed publishing, topology, consumers per listener."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping
from typing import Any

from aio_pika.abc import AbstractChannel

from listeners.rabbit.config import RabbitConfig
from listeners.rabbit.connection import RabbitConnection
from listeners.rabbit.consumer import ChannelConsumer
from listeners.rabbit.delay import DelayedPublishing
from listeners.rabbit.publisher import ConfirmedPublisher
from listeners.rabbit.topology import declare, declare_retry_queue
from listeners.retry.delayed import is_delayed
from listeners.retry.destinations import rabbit_retry_queue, retry_tiers
from listeners.spec import TransportKind
from listeners.tracing.spans import settling_sends
from listeners.transport.base import DeliverySink, Endpoint, Envelope, PublishReceipt

log = logging.getLogger("listeners.rabbit")


class RabbitTransport:
    """The RabbitMQ transport on aio-pika (``listeners.rabbit.url`` is a real broker)."""

    kind: TransportKind = "rabbit"
    name = "aio-pika"

    def __init__(self, config: RabbitConfig) -> None:
        self.config = config
        self.connection = RabbitConnection(config)
        self._publisher = ConfirmedPublisher(self.connection, config.publish_timeout)
        self._delayed = DelayedPublishing(self.connection, self._publisher)
        self._retry_queues: set[str] = set()  # delay tiers known to exist

    def describe(self) -> str:
        return self.config.display()

    async def start(self) -> None:
        await self.connection.start()

    async def close(self) -> None:
        await self._publisher.close()
        await self.connection.close()

    async def publish(self, envelope: Envelope) -> PublishReceipt:
        """Publish (confirmed); with a delay, through its delay queue (:mod:`listeners.rabbit.delay`)."""
        if is_delayed(envelope.delay):
            return await self._delayed.publish(envelope)
        return await self._publisher.publish(envelope)

    async def publish_many(self, envelopes: list[Envelope]) -> list[PublishReceipt]:
        if any(is_delayed(envelope.delay) for envelope in envelopes):
            return await self._delayed.publish_many(envelopes, self._publisher.publish)
        return await self._publisher.publish_many(envelopes)

    async def declare(self, endpoint: Endpoint) -> None:
        await declare(self.connection.channel, endpoint)
        queue = endpoint.options.queue or ""
        self._retry_queues.update(rabbit_retry_queue(queue, tier) for tier in retry_tiers(endpoint.options))

    async def retry_queue(self, endpoint: Endpoint, tier: int) -> str:
        """The delay-tier queue of ``endpoint`` for ``tier`` ms, declared the first time it is needed
        (a handler's own ``RetryLater`` delay); raises if it cannot be declared."""
        name = rabbit_retry_queue(endpoint.options.queue or "", tier)
        if name not in self._retry_queues:
            await declare_retry_queue(self.connection.channel, endpoint, tier)
            self._retry_queues.add(name)
        return name

    def forget_retry_queue(self, name: str) -> None:
        """A tier queue turned out to be gone (a publish to it was returned): declare it on next use."""
        self._retry_queues.discard(name)

    async def republish(self, envelope: Envelope, properties: Mapping[str, Any]) -> PublishReceipt:
        """Publish (confirmed) keeping further AMQP properties of a consumed message; a failed message
        republished to its retry tier or dead-letter queue gets a ``send`` span in its trace."""
        with settling_sends("rabbit", [envelope]):
            return await self._publisher.publish(envelope, properties)

    def subscribe(self, endpoint: Endpoint, sink: DeliverySink) -> RabbitSubscription:
        return RabbitSubscription(self, endpoint, sink)


class RabbitSubscription:
    """``concurrency`` consumers of one listener's queue."""

    def __init__(self, transport: RabbitTransport, endpoint: Endpoint, sink: DeliverySink) -> None:
        self._endpoint = endpoint
        self._connection = transport.connection
        self._consumers = [
            ChannelConsumer(transport.connection, endpoint, sink, transport)
            for _ in range(endpoint.options.concurrency)
        ]
        self._depth: int | None = None  # messages ready in the queue, as last read
        self._depth_channel: AbstractChannel | None = None

    def describe(self) -> str:
        return self._endpoint.describe_sources()

    @property
    def consuming(self) -> bool:
        """Every consumer is registered with the broker on a live channel."""
        return all(consumer.consuming for consumer in self._consumers)

    def consumer_lag(self) -> list[tuple[str, int | None, int]]:
        """The queue's depth (messages ready, not those delivered and unacknowledged) as last read by
        :meth:`refresh_consumer_lag`; nothing before the first read."""
        if self._depth is None:
            return []
        return [(self._endpoint.options.queue or "", None, self._depth)]

    async def refresh_consumer_lag(self) -> None:
        """Read the queue's depth with a passive declare, on a channel kept for it (a failed declare
        closes its channel; the next read opens another)."""
        channel = self._depth_channel
        if channel is None or channel.is_closed:
            channel = self._depth_channel = await self._connection.channel()
        declared = await channel.declare_queue(self._endpoint.options.queue or "", passive=True)
        self._depth = int(declared.declaration_result.message_count or 0)

    async def start(self) -> None:
        await asyncio.gather(*(consumer.open() for consumer in self._consumers))

    async def stop(self) -> None:
        await asyncio.gather(*(consumer.stop() for consumer in self._consumers))

    async def close(self) -> None:
        channel, self._depth_channel = self._depth_channel, None
        if channel is not None and not channel.is_closed:
            with contextlib.suppress(Exception):
                await channel.close()
        results = await asyncio.gather(
            *(consumer.close() for consumer in self._consumers), return_exceptions=True
        )
        for result in results:
            if isinstance(result, BaseException):
                log.warning("listener %s: closing a consumer failed: %s", self._endpoint.listener_id, result)
