"""Kafka listeners and publishing on the embedded broker (``bootstrap_servers: memory://``).

Each of a listener's ``concurrency`` consumers is a group member with its own fetch loop. A record's
offset is committed only when it and every earlier record handed out from its partition are settled;
on revoke a member stops fetching the partition, drains its in-flight records (bounded by
``revoke_timeout``), commits, and lets go.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import re
from dataclasses import dataclass

from listeners.deadletter.envelopes import kafka_dead_letter
from listeners.deadletter.naming import kafka_dead_letter_topic
from listeners.exceptions import TransportUnavailableError
from listeners.memory.broker import MemoryBroker
from listeners.memory.log import LogRecord, MemoryGroup, TopicPartition
from listeners.message import Headers, Message, batch_message
from listeners.outcome import Retry
from listeners.runtime.offsets import PartitionOffsets
from listeners.spec import TransportKind
from listeners.transport.base import Delivery, DeliverySink, Endpoint, Envelope, PublishReceipt

log = logging.getLogger("listeners.memory")

FETCH_BATCH = 100
_MEMBER_NUMBERS = itertools.count(1)
"""Member ids are unique in the process, as the broker makes them unique in a group; zero-padded so
that range assignment, which sorts by id, gives the later partitions to later members."""


class MemoryKafkaTransport:
    """The Kafka transport of the embedded broker."""

    kind: TransportKind = "kafka"
    name = "memory"

    def __init__(self, broker: MemoryBroker, *, revoke_timeout: float = 30.0) -> None:
        self.broker = broker
        self.revoke_timeout = revoke_timeout

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    def describe(self) -> str:
        return "memory://"

    async def publish(self, envelope: Envelope) -> PublishReceipt:
        log_ = self.broker.log
        count = log_.partitions(envelope.destination)
        if envelope.partition is not None and not 0 <= envelope.partition < count:
            raise ValueError(f"topic {envelope.destination!r} has no partition {envelope.partition}")

        def append() -> LogRecord:
            return log_.append(
                envelope.destination,
                envelope.body,
                key=envelope.key,
                headers=envelope.headers,
                partition=envelope.partition,
            )

        if envelope.delay:
            self.broker.schedule(envelope.delay, append)
            return PublishReceipt(envelope.destination)
        record = append()
        return PublishReceipt(record.topic, record.partition, record.offset)

    async def declare(self, endpoint: Endpoint) -> None:
        for topic in endpoint.sources:
            self.broker.log.create_topic(topic)

    async def publish_many(self, envelopes: list[Envelope]) -> list[PublishReceipt]:
        return [await self.publish(envelope) for envelope in envelopes]

    def subscribe(self, endpoint: Endpoint, sink: DeliverySink) -> MemoryKafkaSubscription:
        return MemoryKafkaSubscription(self, endpoint, sink)


@dataclass(eq=False, slots=True)
class _Partition:
    """A member's hold on one assigned partition; replaced when the partition is re-read."""

    topic: str
    partition: int
    position: int
    offsets: PartitionOffsets
    active: bool = True


class MemoryKafkaSubscription:
    """A listener's group members on the embedded log."""

    def __init__(self, transport: MemoryKafkaTransport, endpoint: Endpoint, sink: DeliverySink) -> None:
        self._transport = transport
        self._endpoint = endpoint
        self._group = transport.broker.log.group(endpoint.group_id)
        self._members = [
            _Member(
                f"{endpoint.listener_id}-{next(_MEMBER_NUMBERS):06d}", transport, endpoint, self._group, sink
            )
            for _ in range(endpoint.options.concurrency)
        ]

    def describe(self) -> str:
        return f"{self._endpoint.describe_sources()} group={self._endpoint.group_id}"

    async def start(self) -> None:
        await self._transport.declare(self._endpoint)
        for member in self._members:
            await member.start()

    async def stop(self) -> None:
        for member in self._members:
            member.stop_fetching()

    async def close(self) -> None:
        for member in self._members:
            await member.close()


def _subscribed_topics(endpoint: Endpoint, broker: MemoryBroker) -> tuple[str, ...]:
    """The listener's topics; for a pattern, the topics that exist and match when the member joins."""
    pattern = endpoint.options.topic_pattern
    if not pattern:
        return endpoint.sources
    compiled = re.compile(pattern)
    return tuple(topic for topic in broker.log.topics() if compiled.fullmatch(topic))


class _Member:
    """One consumer: a fetch loop over the partitions the group assigned to it; settles its deliveries."""

    def __init__(
        self,
        member_id: str,
        transport: MemoryKafkaTransport,
        endpoint: Endpoint,
        group: MemoryGroup,
        sink: DeliverySink,
    ) -> None:
        self.member_id = member_id
        self.topics = _subscribed_topics(endpoint, transport.broker)
        self._transport = transport
        self._log = transport.broker.log
        self._endpoint = endpoint
        self._group = group
        self._sink = sink
        self._held: dict[TopicPartition, _Partition] = {}
        self._wake = asyncio.Event()
        self._fetching = True
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self._group.join(self)
        self._task = asyncio.ensure_future(self._fetch_loop())

    def stop_fetching(self) -> None:
        self._fetching = False
        self._wake.set()

    async def close(self) -> None:
        self.stop_fetching()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._group.leave(self)

    # group callbacks ------------------------------------------------------------------------------

    async def assign(self, partitions: set[TopicPartition]) -> None:
        for topic, partition in partitions:
            self._hold(topic, partition, self._start_position(topic, partition))
        self._wake.set()

    async def revoke(self, partitions: set[TopicPartition]) -> None:
        held = [self._held.pop(tp) for tp in partitions if tp in self._held]
        drained = await self._sink.drain(
            lambda message: (message.destination, message.partition) in partitions,
            self._transport.revoke_timeout,
        )
        if not drained:
            log.warning(
                "listener %s: revoke of %s timed out; unfinished records stay uncommitted",
                self._endpoint.listener_id,
                sorted(partitions),
            )
        for state in held:
            state.active = False
            self._group.commit({(state.topic, state.partition): state.offsets.committable})

    def _start_position(self, topic: str, partition: int) -> int:
        committed = self._group.committed((topic, partition))
        if committed is not None:
            return committed
        return (
            0
            if self._endpoint.options.auto_offset_reset == "earliest"
            else self._log.end_offset(topic, partition)
        )

    def _hold(self, topic: str, partition: int, position: int) -> _Partition:
        state = _Partition(topic, partition, position, PartitionOffsets(position))
        self._held[(topic, partition)] = state
        return state

    # fetching -------------------------------------------------------------------------------------

    async def _fetch_loop(self) -> None:
        while self._fetching:
            # Wait futures exist before fetching, so an append during the fetch is not missed.
            waiters = (
                asyncio.ensure_future(self._log.wait_for_append()),
                asyncio.ensure_future(self._wake.wait()),
            )
            try:
                if not await self._fetch_once() and self._fetching:
                    await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
                    self._wake.clear()
            finally:
                for waiter in waiters:
                    waiter.cancel()

    async def _fetch_once(self) -> bool:
        delivered = False
        for state in list(self._held.values()):
            records = self._log.read(state.topic, state.partition, state.position, FETCH_BATCH)
            for group in [records] if self._endpoint.options.batch and records else ([r] for r in records):
                if not (self._fetching and state.active):
                    return delivered
                state.position = group[-1].offset + 1
                for record in group:
                    state.offsets.start(record.offset)
                messages = [self._message(record) for record in group]
                message = batch_message(messages) if self._endpoint.options.batch else messages[0]
                offsets = tuple(record.offset for record in group)
                await self._sink.submit(Delivery(message, self, (state, offsets)))
                delivered = True
        return delivered

    def _message(self, record: LogRecord) -> Message:
        return Message(
            body=record.value,
            headers=Headers(record.headers),
            destination=record.topic,
            listener_id=self._endpoint.listener_id,
            transport="kafka",
            key=record.key,
            partition=record.partition,
            offset=record.offset,
            timestamp=record.timestamp,
            group_id=self._endpoint.group_id,
            raw=record,
        )

    # Settler --------------------------------------------------------------------------------------

    def ack_now(self, delivery: Delivery) -> bool:
        state: _Partition = delivery.handle[0]
        if state.active:
            moved = [state.offsets.finish(offset) for offset in delivery.handle[1]]
            if any(moved):
                self._group.commit({(state.topic, state.partition): state.offsets.committable})
        return True

    async def ack(self, delivery: Delivery) -> None:
        self.ack_now(delivery)

    async def release(self, delivery: Delivery) -> None:
        state: _Partition = delivery.handle[0]
        if state.active and self._fetching and self._held.get((state.topic, state.partition)) is state:
            # Re-read from the first unfinished record, as a Kafka consumer seeks back; records still in
            # flight settle against the old hold and are ignored, so they run again (at-least-once).
            state.active = False
            self._hold(state.topic, state.partition, state.offsets.committable)
            self._wake.set()

    async def dead_letter(self, delivery: Delivery, error: BaseException) -> None:
        for message in delivery.message.records:
            topic = kafka_dead_letter_topic(self._endpoint, message.destination)
            width = self._log.create_topic(topic, self._log.partitions(message.destination))
            await self._transport.publish(
                kafka_dead_letter(self._endpoint, message, error, set(range(width)))
            )
        await self.ack(delivery)

    async def retry_later(self, delivery: Delivery, retry: Retry) -> None:
        raise TransportUnavailableError("non-blocking retries through retry topics are not available yet")
