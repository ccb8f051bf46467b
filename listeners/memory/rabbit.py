"""RabbitMQ listeners and publishing on the embedded broker (``url: memory://``).

A listener declares its queue, and with ``exchange`` the exchange and bindings, at start. Each of its
``concurrency`` consumers pulls within ``prefetch`` unacknowledged messages. A delivery is settled
once: a second ack or a late ack after the channel closed is ignored, as the broker would have
requeued the message already.

Non-blocking retries go through delay-tier queues as on RabbitMQ (see :mod:`listeners.rabbit.retry`):
the message is republished to ``<queue>.retry.<ms>``, whose ``x-message-ttl`` moves it back to the
work queue on the broker's clock, and acknowledged only then. Jitter is not applied: a tier waits
exactly its TTL.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import replace

from listeners.deadletter.envelopes import rabbit_dead_letter
from listeners.memory.amqp import DEFAULT_EXCHANGE, AmqpMessage, QueueConsumer
from listeners.memory.broker import MemoryBroker
from listeners.message import Headers, Message
from listeners.outcome import Retry
from listeners.rabbit.retry import RETRY_COUNT, restore_retried, retry_headers, tier_ms, tier_queue_arguments
from listeners.retry.destinations import rabbit_retry_queue, retry_tiers
from listeners.spec import TransportKind
from listeners.transport.base import Delivery, DeliverySink, Endpoint, Envelope, PublishReceipt


class MemoryRabbitTransport:
    """The RabbitMQ transport of the embedded broker."""

    kind: TransportKind = "rabbit"
    name = "memory"

    def __init__(self, broker: MemoryBroker) -> None:
        self.broker = broker
        if broker.amqp.schedule is None:
            broker.amqp.schedule = broker.schedule  # queue TTLs run on the broker's clock

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    def describe(self) -> str:
        return "memory://"

    async def publish(self, envelope: Envelope) -> PublishReceipt:
        message = AmqpMessage(
            body=envelope.body,
            headers=envelope.headers,
            exchange=envelope.destination,
            routing_key=envelope.routing_key,
            timestamp=self.broker.clock.time(),
            content_type=envelope.content_type,
        )
        amqp = self.broker.amqp
        if envelope.delay:
            amqp.check_routable(message)
            self.broker.schedule(envelope.delay, lambda: amqp.publish(message))
        else:
            amqp.publish(message)
        return PublishReceipt(envelope.destination)

    async def declare(self, endpoint: Endpoint) -> None:
        options = endpoint.options
        amqp = self.broker.amqp
        tiers = retry_tiers(options)
        if not options.declare:
            amqp.check_exists(endpoint.listener_id, options.queue or "", options.exchange)
            for tier in tiers:
                amqp.check_exists(endpoint.listener_id, rabbit_retry_queue(options.queue or "", tier), None)
            return
        queue = amqp.declare_queue(options.queue or "")
        for tier in tiers:
            self.declare_retry_queue(endpoint, tier)
        queue.single_active = options.single_active_consumer
        if options.exchange is not None:
            amqp.declare_exchange(options.exchange, options.exchange_type)
            for key in endpoint.binding_keys:
                amqp.bind(options.queue or "", options.exchange, key)

    async def publish_many(self, envelopes: list[Envelope]) -> list[PublishReceipt]:
        return [await self.publish(envelope) for envelope in envelopes]

    def declare_retry_queue(self, endpoint: Endpoint, tier: int) -> str:
        """The delay-tier queue of ``endpoint`` for ``tier`` ms (declared if new); returns its name."""
        queue = endpoint.options.queue or ""
        name = rabbit_retry_queue(queue, tier)
        self.broker.amqp.declare_queue(name, tier_queue_arguments(queue, tier))
        return name

    def subscribe(self, endpoint: Endpoint, sink: DeliverySink) -> MemoryRabbitSubscription:
        return MemoryRabbitSubscription(self, endpoint, sink)


class MemoryRabbitSubscription:
    """A listener's consumers on one embedded queue; the settler of their deliveries."""

    def __init__(self, transport: MemoryRabbitTransport, endpoint: Endpoint, sink: DeliverySink) -> None:
        self._transport = transport
        self._broker = transport.broker
        self._endpoint = endpoint
        self._sink = sink
        self._queue = endpoint.options.queue or ""
        self._consumers: list[QueueConsumer] = []
        self._tasks: list[asyncio.Task[None]] = []

    def describe(self) -> str:
        return self._endpoint.describe_sources()

    @property
    def consuming(self) -> bool:
        """Every consumer is active and its delivery task runs."""
        return (
            bool(self._consumers)
            and all(consumer.active for consumer in self._consumers)
            and all(not task.done() for task in self._tasks)
        )

    def consumer_lag(self) -> list[tuple[str, int | None, int]]:
        """Messages ready in the queue (not those delivered and unacknowledged), as RabbitMQ counts."""
        queue = self._broker.amqp.queues.get(self._queue)
        return [(self._queue, None, len(queue.messages))] if queue is not None else []

    async def start(self) -> None:
        await self._transport.declare(self._endpoint)
        options = self._endpoint.options
        for _ in range(options.concurrency):
            consumer = self._broker.amqp.consume(self._queue, options.prefetch)
            self._consumers.append(consumer)
            self._tasks.append(asyncio.ensure_future(self._consume(consumer)))

    async def stop(self) -> None:
        for consumer in self._consumers:
            consumer.cancel()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def close(self) -> None:
        await self.stop()
        for consumer in self._consumers:
            consumer.close()

    async def _consume(self, consumer: QueueConsumer) -> None:
        while consumer.active:
            delivery_tag, message = await consumer.get()
            await self._sink.submit(Delivery(self._message(message), self, (consumer, delivery_tag)))

    def _message(self, message: AmqpMessage) -> Message:
        delivered = Message(
            body=message.body,
            headers=Headers(message.headers),
            destination=self._queue,
            listener_id=self._endpoint.listener_id,
            transport="rabbit",
            timestamp=message.timestamp,
            exchange=message.exchange,
            routing_key=message.routing_key,
            redelivered=message.redelivered,
            raw=message,
        )
        if message.headers and any(name == RETRY_COUNT for name, _ in message.headers):
            restore_retried(delivered)  # back from a delay tier: its attempt, original exchange and key
        return delivered

    # Settler --------------------------------------------------------------------------------------

    def ack_now(self, delivery: Delivery) -> bool:
        consumer, delivery_tag = delivery.handle
        consumer.ack(delivery_tag)
        return True

    def holds_back_finished(self, delivery: Delivery) -> bool:
        return False  # each delivery is settled on its own

    async def ack(self, delivery: Delivery) -> None:
        self.ack_now(delivery)

    async def release(self, delivery: Delivery) -> None:
        consumer, delivery_tag = delivery.handle
        consumer.requeue(delivery_tag)

    async def dead_letter(self, delivery: Delivery, error: BaseException) -> None:
        message = delivery.message
        content_type = message.raw.content_type if isinstance(message.raw, AmqpMessage) else None
        envelope = rabbit_dead_letter(self._endpoint, message, error, content_type)
        self._broker.amqp.declare_queue(envelope.routing_key)
        await self._transport.publish(envelope)
        await self.ack(delivery)

    async def retry_later(self, delivery: Delivery, retry: Retry) -> None:
        """Republish to the delay tier of ``retry`` (declared if new), then acknowledge."""
        message = delivery.message
        queue = self._transport.declare_retry_queue(self._endpoint, tier_ms(retry))
        headers = retry_headers(message, retry)
        raw = message.raw
        if isinstance(raw, AmqpMessage):  # keeps its timestamp and content type
            republished = replace(
                raw, headers=headers, exchange=DEFAULT_EXCHANGE, routing_key=queue, redelivered=False
            )
        else:
            republished = AmqpMessage(
                message.body, headers, DEFAULT_EXCHANGE, queue, self._broker.clock.time()
            )
        self._broker.amqp.publish(republished)
        await self.ack(delivery)
