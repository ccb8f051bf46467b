"""The embedded broker's RabbitMQ side: exchanges, queues, bindings, competing consumers, acks.

Queues honour ``x-message-ttl`` with ``x-dead-letter-exchange`` (and ``x-dead-letter-routing-key``)
as RabbitMQ does for delay tiers: a message left in such a queue for the TTL is moved to the
dead-letter exchange with that routing key (else its own). Expiry runs a timer per message on the
broker's clock (RabbitMQ expires from the head of the queue; with one TTL per queue the order is the
same); a message a consumer holds when its time is up is not expired.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from listeners.exceptions import TransportError, UnroutableError
from listeners.message import HeaderPairs
from listeners.spec import ExchangeType

DEFAULT_EXCHANGE = ""
Scheduler = Callable[[float, Callable[[], object]], None]

log = logging.getLogger("listeners.memory")


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

    def __init__(self, name: str, arguments: Mapping[str, Any] | None = None) -> None:
        self.name = name
        self.messages: deque[AmqpMessage] = deque()
        self._changed = asyncio.Event()
        self.consumers: list[QueueConsumer] = []
        self.single_active = False
        self.arguments: dict[str, Any] | None = None
        self.ttl: float | None = None  # seconds; set with a dead-letter exchange only
        self.dead_letter_exchange: str | None = None
        self.dead_letter_routing_key: str | None = None
        self.on_put: Callable[[MemoryQueue, AmqpMessage], None] | None = None
        if arguments is not None:
            self.configure(arguments)

    def configure(self, arguments: Mapping[str, Any]) -> None:
        """Take the declared arguments; the TTL-to-dead-letter ones are honoured."""
        self.arguments = dict(arguments)
        ttl = arguments.get("x-message-ttl")
        exchange = arguments.get("x-dead-letter-exchange")
        routing_key = arguments.get("x-dead-letter-routing-key")
        if ttl is not None and (not isinstance(ttl, int) or isinstance(ttl, bool) or ttl < 0):
            raise TransportError(f"queue {self.name!r}: x-message-ttl must be a non-negative integer (ms)")
        self.ttl = ttl / 1000 if ttl is not None and exchange is not None else None
        self.dead_letter_exchange = None if exchange is None else str(exchange)
        self.dead_letter_routing_key = None if routing_key is None else str(routing_key)

    def put(self, message: AmqpMessage, *, front: bool = False) -> None:
        if front:
            self.messages.appendleft(message)
        else:
            self.messages.append(message)
        if self.ttl is not None and self.on_put is not None:
            self.on_put(self, message)
        self.notify()

    def take(self, message: AmqpMessage) -> bool:
        """Remove ``message`` (this very object) if it is still waiting in the queue."""
        for index, held in enumerate(self.messages):
            if held is message:
                del self.messages[index]
                self.notify()
                return True
        return False

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

    def __init__(self, schedule: Scheduler | None = None) -> None:
        self._exchanges: dict[str, _Exchange] = {}
        self.queues: dict[str, MemoryQueue] = {}
        self._consumer_tags = itertools.count(1)
        self.schedule: Scheduler | None = schedule
        """Runs an action after a delay on the broker's clock (message TTLs); the loop's timer if unset."""

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

    def declare_queue(self, name: str, arguments: Mapping[str, Any] | None = None) -> MemoryQueue:
        """The queue ``name``, created if needed. ``arguments`` (None: whatever it has) must match those
        it was declared with before, as RabbitMQ requires."""
        queue = self.queues.get(name)
        if queue is None:
            queue = self.queues[name] = MemoryQueue(name)
            queue.on_put = self._expire_later
        if arguments is not None:
            if queue.arguments is None:
                queue.configure(arguments)
            elif queue.arguments != dict(arguments):
                raise TransportError(
                    f"queue {name!r} exists with other arguments than declared: "
                    f"{queue.arguments!r} != {dict(arguments)!r}"
                )
        return queue

    def _expire_later(self, queue: MemoryQueue, message: AmqpMessage) -> None:
        delay = queue.ttl or 0.0
        if self.schedule is not None:
            self.schedule(delay, lambda: self._expire(queue, message))
        else:
            asyncio.get_running_loop().call_later(delay, self._expire, queue, message)

    def _expire(self, queue: MemoryQueue, message: AmqpMessage) -> None:
        """The TTL of ``message`` ran out: dead-letter it if it is still waiting in ``queue``."""
        if self.queues.get(queue.name) is not queue or not queue.take(message):
            return
        exchange = queue.dead_letter_exchange
        if exchange is None:
            return
        routing_key = queue.dead_letter_routing_key
        moved = replace(
            message,
            exchange=exchange,
            routing_key=message.routing_key if routing_key is None else routing_key,
            redelivered=False,
        )
        try:
            self.publish(moved)
        except TransportError as error:  # RabbitMQ drops a dead letter it cannot route
            log.warning("queue %r: expired message dropped, dead-lettering failed: %s", queue.name, error)

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
