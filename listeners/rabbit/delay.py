"""Delayed publishing on RabbitMQ through delay queues, without the delayed-message plugin.

``RabbitPublisher.publish(exchange, routing_key, value, delay=s)`` publishes (mandatory, confirmed)
to the durable headers exchange ``listeners.delay`` with the message's own routing key, body,
content type and headers plus ``listeners-delay-exchange`` (the target exchange) and
``listeners-delay-ms`` (the delay in whole milliseconds, rounded up). That exchange routes it to the
durable classic queue ``listeners.delay.<exchange or amq.default>.<ms>``, declared with
``x-message-ttl`` = ms and ``x-dead-letter-exchange`` = the target exchange (no dead-letter routing
key), and bound with ``x-match: all`` on those two headers. When the TTL runs out RabbitMQ
dead-letters the message to the target exchange with its routing key, as if it were published then.

The first delayed publish for an (exchange, delay) pair checks the target exchange passively (a
missing one is an error naming it; the default exchange always exists) and declares the queue and
its binding; later ones go straight to ``listeners.delay``. Should the binding be gone (the queue
deleted), the publish comes back unroutable and is declared and sent once more.

Know before using it:

- **each distinct delay is one queue** per target exchange: use a few distinct delays (e.g. 1 s,
  10 s, 60 s), not computed ones;
- a message whose target **does not route** when it becomes due (no queue bound for its routing key
  then) is dropped by RabbitMQ: mandatory only covers the publish to ``listeners.delay``, so bind the
  consuming queue before publishing with a delay;
- no jitter; a message is delivered no earlier than its delay, later if its queue's consumers are busy;
- the consumer sees the two ``listeners-delay-*`` headers and RabbitMQ's ``x-death`` besides its own.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from listeners.exceptions import UnroutableError
from listeners.rabbit.connection import RabbitConnection
from listeners.rabbit.publisher import ConfirmedPublisher
from listeners.rabbit.topology import check_exchange, declare_delay_queue
from listeners.retry.delayed import delay_ms_up, is_delayed, rabbit_delayed_envelope
from listeners.transport.base import Envelope, PublishReceipt


class DelayedPublishing:
    """Publishes envelopes with a delay through their delay queue, declared on first use."""

    def __init__(self, connection: RabbitConnection, publisher: ConfirmedPublisher) -> None:
        self._connection = connection
        self._publisher = publisher
        self._declared: set[tuple[str, int]] = set()
        self._declaring = asyncio.Lock()

    async def publish(self, envelope: Envelope) -> PublishReceipt:
        """Publish ``envelope`` (which has a delay) to its delay queue and await the confirm."""
        exchange, ms = envelope.destination, delay_ms_up(envelope.delay or 0.0)
        routed = rabbit_delayed_envelope(envelope, ms)
        await self._ensure(exchange, ms)
        try:
            await self._publisher.publish(routed)
        except UnroutableError:  # the delay queue or its binding was deleted since: declare it again
            self._declared.discard((exchange, ms))
            await self._ensure(exchange, ms)
            await self._publisher.publish(routed)
        return PublishReceipt(exchange)

    async def publish_many(
        self, envelopes: list[Envelope], direct: Callable[[Envelope], Awaitable[PublishReceipt]]
    ) -> list[PublishReceipt]:
        """Publish all (delayed or, through ``direct``, not), pipelined; raise the first failure after
        every one was awaited."""
        results = await asyncio.gather(
            *(self.publish(e) if is_delayed(e.delay) else direct(e) for e in envelopes),
            return_exceptions=True,
        )
        for result in results:
            if isinstance(result, BaseException):
                raise result
        return [result for result in results if isinstance(result, PublishReceipt)]

    async def _ensure(self, exchange: str, ms: int) -> None:
        if (exchange, ms) in self._declared:
            return
        async with self._declaring:
            if (exchange, ms) in self._declared:
                return
            purpose = f"a delayed publish to exchange {exchange!r}"
            await check_exchange(self._connection.channel, exchange, purpose)
            await declare_delay_queue(self._connection.channel, exchange, ms)
            self._declared.add((exchange, ms))
