"""The embedded broker's RabbitMQ side: exchanges, queues, bindings, competing consumers, acks."""

from __future__ import annotations

import asyncio
import itertools
from collections import deque
from dataclasses import dataclass, replace

from listeners.exceptions import TransportError, UnroutableError
from listeners.message import HeaderPairs
from listeners.spec import ExchangeType

DEFAULT_EXCHANGE = ""


@dataclass(frozen=True, slots=True)
class AmqpMessage:
    """A message as a queue holds it."""

    body: bytes
    headers: HeaderPairs
    exchange: str
    routing_key: str
    timestamp: float
    content_type: str | None = None
    redelivered: bool = False


def topic_matches(pattern: str, routing_key: str) -> bool:
    """AMQP topic matching: words split on ``.``, ``*`` is one word, ``#`` zero or more words."""
    return _match(pattern.split("."), routing_key.split("."))


def _match(pattern: list[str], words: list[str]) -> bool:
    if not pattern:
        return not words
    head, rest = pattern[0], pattern[1:]
    if head == "#":
        return any(_match(rest, words[skip:]) for skip in range(len(words) + 1))
    if not words:
        return False
    return (head in ("*", words[0])) and _match(rest, words[1:])


@dataclass(slots=True)
class _Exchange:
    name: str
    type: ExchangeType
    bindings: list[tuple[str, str]]

    def route(self, routing_key: str) -> list[str]:
        if self.type == "fanout":
            return [queue for queue, _ in self.bindings]
        if self.type == "direct":
            return [queue for queue, key in self.bindings if key == routing_key]
        return [queue for queue, key in self.bindings if topic_matches(key, routing_key)]


class MemoryQueue:
    """A FIFO queue with competing consumers pulling within their prefetch."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.messages: deque[AmqpMessage] = deque()
        self._changed = asyncio.Event()
        self.consumers: list[QueueConsumer] = []
        self.single_active = False

    def put(self, message: AmqpMessage, *, front: bool = False) -> None:
        if front:
            self.messages.appendleft(message)
        else:
            self.messages.append(message)
        self.notify()

    def notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    async def changed(self) -> None:
        await self._changed.wait()


class QueueConsumer:
    """One consumer of a queue: at most ``prefetch`` unacknowledged messages, acks by delivery tag."""

    def __init__(self, queue: MemoryQueue, prefetch: int, tag: str) -> None:
        self.queue = queue
        self.prefetch = prefetch
        self.tag = tag
        self.unacked: dict[int, AmqpMessage] = {}
        self._tags = itertools.count(1)
        self.active = True

    async def get(self) -> tuple[int, AmqpMessage]:
        """The next message, waiting for one and for prefetch credit."""
        while True:
            if not self.active:
                raise TransportError(f"consumer {self.tag} of queue {self.queue.name!r} is cancelled")
            if self.queue.messages and len(self.unacked) < self.prefetch and self._may_receive():
                message = self.queue.messages.popleft()
                delivery_tag = next(self._tags)
                self.unacked[delivery_tag] = message
                return delivery_tag, message
            await self.queue.changed()

    def _may_receive(self) -> bool:
        """With a single active consumer, only the first live consumer of the queue receives."""
        if not self.queue.single_active:
            return True
        active = next((consumer for consumer in self.queue.consumers if consumer.active), None)
        return active is self

    def ack(self, delivery_tag: int) -> bool:
        """Acknowledge; False if the tag is not outstanding (already settled or requeued)."""
        if self.unacked.pop(delivery_tag, None) is None:
            return False
        self.queue.notify()
        return True

    def requeue(self, delivery_tag: int) -> bool:
        """Put the message back at the head of the queue, marked redelivered."""
        message = self.unacked.pop(delivery_tag, None)
        if message is None:
            return False
        self.queue.put(replace(message, redelivered=True), front=True)
        return True

    def cancel(self) -> None:
        """Stop receiving; outstanding messages can still be acked until :meth:`close`."""
        self.active = False
        self.queue.notify()

    def close(self) -> None:
        """Channel closed: everything unacknowledged goes back to the queue, redelivered."""
        self.cancel()
        for delivery_tag in sorted(self.unacked, reverse=True):
            self.requeue(delivery_tag)
        if self in self.queue.consumers:
            self.queue.consumers.remove(self)


class MemoryAmqp:
    """Exchanges (direct, topic, fanout), queues and bindings; the default exchange routes by queue name."""

    def __init__(self) -> None:
        self._exchanges: dict[str, _Exchange] = {}
        self.queues: dict[str, MemoryQueue] = {}
        self._consumer_tags = itertools.count(1)

    def declare_exchange(self, name: str, type: ExchangeType) -> None:
        if type == "headers":
            raise TransportError(f"exchange {name!r}: the embedded broker has no headers exchanges")
        existing = self._exchanges.get(name)
        if existing is None:
            self._exchanges[name] = _Exchange(name, type, [])
        elif existing.type != type:
            raise TransportError(
                f"exchange {name!r} exists with type {existing.type!r}; cannot redeclare it as {type!r}"
            )

    def declare_queue(self, name: str) -> MemoryQueue:
        if name not in self.queues:
            self.queues[name] = MemoryQueue(name)
        return self.queues[name]

    def check_exists(self, listener_id: str, queue: str, exchange: str | None) -> None:
        """``declare: false``: the queue (and exchange) must exist already."""
        if exchange is not None and exchange not in self._exchanges:
            raise TransportError(
                f"listener {listener_id}: exchange {exchange!r} does not exist "
                "(declare: false only checks; create it or set declare: true)"
            )
        if queue not in self.queues:
            raise TransportError(
                f"listener {listener_id}: queue {queue!r} does not exist "
                "(declare: false only checks; create it or set declare: true)"
            )

    def bind(self, queue: str, exchange: str, routing_key: str) -> None:
        if exchange not in self._exchanges:
            raise TransportError(f"cannot bind queue {queue!r}: no exchange {exchange!r}")
        self.declare_queue(queue)
        bindings = self._exchanges[exchange].bindings
        if (queue, routing_key) not in bindings:
            bindings.append((queue, routing_key))

    def route(self, message: AmqpMessage) -> list[str]:
        """The queues ``message`` would reach; raises if none (mandatory publish) or no such exchange."""
        if message.exchange == DEFAULT_EXCHANGE:
            targets = [message.routing_key] if message.routing_key in self.queues else []
        else:
            exchange = self._exchanges.get(message.exchange)
            if exchange is None:
                raise TransportError(
                    f"no exchange {message.exchange!r} (declare it or bind a listener to it)"
                )
            targets = exchange.route(message.routing_key)
        if not targets:
            raise UnroutableError(
                f"message to exchange {message.exchange!r} with routing key {message.routing_key!r} "
                "reached no queue"
            )
        return list(dict.fromkeys(targets))

    def check_routable(self, message: AmqpMessage) -> None:
        """Raise now what :meth:`publish` would raise, for deliveries published later."""
        self.route(message)

    def publish(self, message: AmqpMessage) -> int:
        """Route ``message`` to its queues; returns how many."""
        targets = self.route(message)
        for queue in targets:
            self.queues[queue].put(message)
        return len(targets)

    def consume(self, queue: str, prefetch: int) -> QueueConsumer:
        target = self.declare_queue(queue)
        consumer = QueueConsumer(target, prefetch, f"ctag-{next(self._consumer_tags)}")
        target.consumers.append(consumer)
        return consumer
