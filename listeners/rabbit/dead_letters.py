"""Dead-letter queues on RabbitMQ: look without taking, replay by republishing and then acknowledging.

A browse opens its own channel, checks the queue with a passive declare (which also gives the message
count) and takes up to that many messages with ``basic.get`` *unacknowledged*. Nothing is ever
rejected: closing the channel at the end hands every message not replayed back to the broker, which
puts it back in its place in the queue (marked redelivered). A replay publishes through the
transport's confirmed, mandatory publisher and acknowledges the dead letter only once the broker
confirmed the publish; if the publish fails, the dead letter stays.

The messages looked at stay unacknowledged on the browse's channel until it ends, so a browse holds
at most as many as the queue had when it started.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from typing import Any

from aio_pika.abc import AbstractChannel, AbstractIncomingMessage, AbstractQueue
from aiormq.exceptions import ChannelNotFoundEntity

from listeners.deadletter.store import StoredDeadLetter
from listeners.exceptions import TransportError
from listeners.rabbit.amqp import header_pairs_from_table, timestamp_seconds
from listeners.rabbit.errors import translate
from listeners.rabbit.transport import RabbitTransport
from listeners.spec import TransportKind
from listeners.transport.base import Envelope

GET_TIMEOUT = 10.0
"""Seconds one ``basic.get`` may take."""
_KEPT = ("content_encoding", "priority", "correlation_id", "reply_to", "message_id", "timestamp", "app_id")


class RabbitDeadLetters:
    """Dead-letter queues of the aio-pika transport."""

    kind: TransportKind = "rabbit"
    removes_replayed = True

    def __init__(self, transport: RabbitTransport) -> None:
        self._transport = transport

    @asynccontextmanager
    async def browse(self, destination: str, *, since: float | None = None) -> AsyncIterator[_QueueBrowse]:
        channel = await self._transport.connection.channel()
        try:
            try:
                queue = await channel.declare_queue(destination, passive=True)
            except ChannelNotFoundEntity:
                raise TransportError(f"no queue {destination!r} on {self._transport.describe()}") from None
            except Exception as error:
                raise translate(error, f"checking the dead-letter queue {destination!r}") from error
            yield _QueueBrowse(destination, queue, int(queue.declaration_result.message_count or 0))
        finally:
            await _close(channel)

    async def replay(self, letter: StoredDeadLetter, envelope: Envelope) -> None:
        message: AbstractIncomingMessage = letter.handle
        properties = {name: getattr(message, name) for name in _KEPT if getattr(message, name) is not None}
        if message.type is not None:
            properties["type"] = message.type
        await self._transport.republish(envelope, properties)
        try:
            await message.ack()
        except Exception as error:
            raise translate(
                error, f"acknowledging {letter.position} after it was replayed (it may be replayed twice)"
            ) from error


class _QueueBrowse:
    """Up to ``total`` messages of one queue, taken unacknowledged one by one."""

    def __init__(self, name: str, queue: AbstractQueue, total: int) -> None:
        self._name = name
        self._queue = queue
        self.total = total

    async def __aiter__(self) -> AsyncIterator[StoredDeadLetter]:
        for index in range(self.total):
            try:
                message = await self._queue.get(no_ack=False, fail=False, timeout=GET_TIMEOUT)
            except Exception as error:
                raise translate(error, f"reading the dead-letter queue {self._name!r}") from error
            if message is None:
                return  # taken by someone else meanwhile
            yield _letter(self._name, index, message)


def _letter(queue: str, index: int, message: AbstractIncomingMessage) -> StoredDeadLetter:
    headers: Any = message.headers
    return StoredDeadLetter(
        queue,
        message.body,
        header_pairs_from_table(headers),
        index=index,
        timestamp=timestamp_seconds(message.timestamp),
        content_type=message.content_type,
        handle=message,
    )


async def _close(channel: AbstractChannel) -> None:
    """Close the browse's channel: the broker requeues every message still unacknowledged on it."""
    if not channel.is_closed:
        with suppress(Exception):  # a channel the broker closed already has requeued them
            await channel.close()
