"""Dead letters on the embedded broker: read a dead-letter topic's log or look into a dead-letter queue.

Browsing takes a snapshot and changes nothing: no group reads the topic, no consumer takes from the
queue. Replay publishes through the transport and then, for a queue, removes that very message (if
a consumer took it meanwhile, there is nothing left to remove).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

from listeners.deadletter.store import StoredDeadLetter
from listeners.exceptions import TransportError
from listeners.memory.amqp import AmqpMessage
from listeners.memory.kafka import MemoryKafkaTransport
from listeners.memory.rabbit import MemoryRabbitTransport
from listeners.spec import TransportKind
from listeners.transport.base import Envelope


class _Snapshot:
    """Dead letters copied out of the broker when the browse began."""

    def __init__(self, letters: Sequence[StoredDeadLetter]) -> None:
        self._letters = letters
        self.total = len(letters)

    async def __aiter__(self) -> AsyncIterator[StoredDeadLetter]:
        for letter in self._letters:
            yield letter


class MemoryKafkaDeadLetters:
    """Dead-letter topics of the embedded broker's Kafka side."""

    kind: TransportKind = "kafka"
    removes_replayed = False

    def __init__(self, transport: MemoryKafkaTransport) -> None:
        self._transport = transport

    @asynccontextmanager
    async def browse(self, destination: str, *, since: float | None = None) -> AsyncIterator[_Snapshot]:
        log = self._transport.broker.log
        if destination not in log.topics():
            raise TransportError(f"no topic {destination!r} on the embedded broker")
        letters = [
            StoredDeadLetter(
                destination,
                record.value,
                record.headers,
                key=record.key,
                partition=record.partition,
                offset=record.offset,
                timestamp=record.timestamp,
            )
            for record in log.records(destination)
            if since is None or record.timestamp >= since
        ]
        yield _Snapshot(letters)

    async def replay(self, letter: StoredDeadLetter, envelope: Envelope) -> None:
        await self._transport.publish(envelope)


class MemoryRabbitDeadLetters:
    """Dead-letter queues of the embedded broker's RabbitMQ side."""

    kind: TransportKind = "rabbit"
    removes_replayed = True

    def __init__(self, transport: MemoryRabbitTransport) -> None:
        self._transport = transport

    @asynccontextmanager
    async def browse(self, destination: str, *, since: float | None = None) -> AsyncIterator[_Snapshot]:
        queue = self._transport.broker.amqp.queues.get(destination)
        if queue is None:
            raise TransportError(f"no queue {destination!r} on the embedded broker")
        letters = [
            StoredDeadLetter(
                destination,
                message.body,
                message.headers,
                index=index,
                timestamp=message.timestamp,
                content_type=message.content_type,
                handle=message,
            )
            for index, message in enumerate(queue.messages)
        ]
        yield _Snapshot(letters)

    async def replay(self, letter: StoredDeadLetter, envelope: Envelope) -> None:
        await self._transport.publish(envelope)
        queue = self._transport.broker.amqp.queues.get(letter.destination)
        if queue is not None and isinstance(letter.handle, AmqpMessage):
            queue.take(letter.handle)
