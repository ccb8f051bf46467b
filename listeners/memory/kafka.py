"""Kafka listeners and publishing on the embedded broker (``bootstrap_servers: memory://``).

Each of a listener's ``concurrency`` consumers is a group member with its own fetch loop. A record's
offset is committed only when it and every earlier record handed out from its partition are settled;
on revoke a member stops fetching the partition, drains its in-flight records (bounded by
``revoke_timeout``), commits, and lets go.

A non-blocking listener (``retry.mode: non-blocking``) also consumes the retry topics of its topics
(``<topic>-retry-<delayMs>``, Spring Kafka's names, as wide as the topic). A failed record is
republished there (same partition number, original key, value and headers plus the retry headers) and
only then marked finished. A retry-topic record is not handed out before the due time in its
``retry_topic-backoff-timestamp`` header: its partition stays held at that record (nothing later in
it is handed out either) until the broker clock reaches the due time, while other partitions flow.
Dead letters of retry-topic records go to the source topic's dead-letter topic.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import re
from dataclasses import dataclass

from listeners.deadletter.envelopes import kafka_dead_letter, kafka_retry
from listeners.deadletter.naming import kafka_dead_letter_topic
from listeners.memory.broker import MemoryBroker
from listeners.memory.log import LogRecord, MemoryGroup, MemoryLog, TopicPartition
from listeners.message import Headers, Message, batch_message
from listeners.outcome import Retry
from listeners.retry.destinations import (
    kafka_retry_tier,
    kafka_retry_topic,
    kafka_retry_topics,
    kafka_source_topic,
    retry_tiers,
)
from listeners.retry.kafka_wire import due_at_ms, retry_state
from listeners.runtime.offsets import PartitionOffsets
from listeners.spec import TransportKind
from listeners.transport.base import Delivery, DeliverySink, Endpoint, Envelope, PublishReceipt

log = logging.getLogger("listeners.memory")

FETCH_BATCH = 100
_DUE_SLACK_MS = 0.001
"""A record due within a microsecond counts as due: clock readings at epoch magnitude carry float
noise of ~0.2 us, far below the millisecond resolution of due times."""
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
            _declare_retry_topics(self.broker.log, endpoint, topic, dead_letter=True)

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
    held_until_ms: int | None = None
    """Due time (epoch ms) of the retry record at ``position``: nothing is handed out before it."""


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

    @property
    def consuming(self) -> bool:
        """Every member joined the group and its fetch loop runs."""
        return all(member.consuming for member in self._members)

    def consumer_lag(self) -> list[tuple[str, int | None, int]]:
        """End offset minus committed offset of every partition the members hold."""
        return [entry for member in self._members for entry in member.consumer_lag()]

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


def _declare_retry_topics(
    log_: MemoryLog, endpoint: Endpoint, topic: str, *, dead_letter: bool = False
) -> dict[str, str]:
    """Create the retry topics (and with ``dead_letter`` the dead-letter topic) of a non-blocking
    listener's ``topic``, as wide as ``topic``; return ``{retry topic: topic}`` (empty unless the
    listener is non-blocking)."""
    retry_topics = kafka_retry_topics(endpoint.options, topic)
    if not retry_topics:
        return {}
    width = log_.create_topic(topic)
    for retry_topic in retry_topics:
        log_.create_topic(retry_topic, width)
    if dead_letter and endpoint.options.dead_letter.enabled:
        log_.create_topic(kafka_dead_letter_topic(endpoint, topic), width)
    return dict.fromkeys(retry_topics, topic)


def _subscribed_topics(endpoint: Endpoint, broker: MemoryBroker) -> tuple[tuple[str, ...], dict[str, str]]:
    """The listener's topics and, for a non-blocking listener, ``{retry topic: source topic}``.

    For a pattern, the topics that exist and match when the member joins; a non-blocking listener
    takes the matching topics named like retry topics as retry topics, not as sources. The retry
    topics are created here (as wide as their topic) so that the group assigns all their partitions;
    dead-letter topics are not, or a pattern could match them before any record is dead-lettered.
    """
    pattern = endpoint.options.topic_pattern
    non_blocking = bool(retry_tiers(endpoint.options))
    if not pattern:
        sources = endpoint.sources
    else:
        compiled = re.compile(pattern)
        sources = tuple(
            topic
            for topic in broker.log.topics()
            if compiled.fullmatch(topic) and not (non_blocking and kafka_source_topic(topic) != topic)
        )
    retry_sources: dict[str, str] = {}
    for topic in sources:
        retry_sources.update(_declare_retry_topics(broker.log, endpoint, topic))
    return (*sources, *retry_sources), retry_sources


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
        self.topics, self._retry_sources = _subscribed_topics(endpoint, transport.broker)
        self._tiers = retry_tiers(endpoint.options)
        self._transport = transport
        self._clock = transport.broker.clock
        self._log = transport.broker.log
        self._endpoint = endpoint
        self._group = group
        self._sink = sink
        self._held: dict[TopicPartition, _Partition] = {}
        self._wake = asyncio.Event()
        self._fetching = True
        self._task: asyncio.Task[None] | None = None
        self._timers: set[asyncio.Task[None]] = set()

    @property
    def consuming(self) -> bool:
        task = self._task
        return self._fetching and task is not None and not task.done()

    def consumer_lag(self) -> list[tuple[str, int | None, int]]:
        """``(topic, partition, end offset - committed offset)`` of the partitions it holds."""
        lag: list[tuple[str, int | None, int]] = []
        for (topic, partition), state in list(self._held.items()):
            committed = self._group.committed((topic, partition))
            done = state.offsets.committable if committed is None else committed
            lag.append((topic, partition, max(0, self._log.end_offset(topic, partition) - done)))
        return lag

    async def start(self) -> None:
        await self._group.join(self)
        self._task = asyncio.ensure_future(self._fetch_loop())

    def stop_fetching(self) -> None:
        self._fetching = False
        self._wake.set()

    async def close(self) -> None:
        self.stop_fetching()
        tasks = [*self._timers, *([self._task] if self._task is not None else [])]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
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
            if state.held_until_ms is not None:
                if not self._is_due(state.held_until_ms):
                    continue  # its timer wakes the loop when it is due
                state.held_until_ms = None
            records = self._log.read(state.topic, state.partition, state.position, FETCH_BATCH)
            if state.topic in self._retry_sources:
                records = self._due_records(state, records)
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

    # retry topics -------------------------------------------------------------------------------

    def _due_records(self, state: _Partition, records: list[LogRecord]) -> list[LogRecord]:
        """The leading records that are due; if one is not, hold the partition at it until it is."""
        for index, record in enumerate(records):
            if not record.headers:
                continue
            due_ms = retry_state(Headers(record.headers)).due_ms
            if due_ms is not None and not self._is_due(due_ms):
                state.held_until_ms = due_ms
                self._wake_when_due(due_ms)
                return records[:index]
        return records

    def _is_due(self, due_ms: int) -> bool:
        return due_ms <= self._clock.time() * 1000 + _DUE_SLACK_MS

    def _wake_when_due(self, due_ms: int) -> None:
        async def wake() -> None:
            while not self._is_due(due_ms):
                await self._clock.sleep((due_ms - self._clock.time() * 1000) / 1000)
            self._wake.set()

        task = asyncio.ensure_future(wake())
        self._timers.add(task)
        task.add_done_callback(self._timers.discard)

    def _source_topic(self, message: Message) -> str:
        """The topic a record first came from: its own, unless it is on one of our retry topics."""
        # Our own mapping rather than the record's kafka_original-topic header: a retry must go to a
        # topic this listener consumes, and a dead-letter topic's records carry original-topic headers.
        return self._retry_sources.get(message.destination, message.destination)

    def _message(self, record: LogRecord) -> Message:
        headers = Headers(record.headers)
        return Message(
            body=record.value,
            headers=headers,
            destination=record.topic,
            listener_id=self._endpoint.listener_id,
            transport="kafka",
            key=record.key,
            partition=record.partition,
            offset=record.offset,
            timestamp=record.timestamp,
            group_id=self._endpoint.group_id,
            attempt=retry_state(headers).attempt if self._tiers and record.headers else 1,
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

    def holds_back_finished(self, delivery: Delivery) -> bool:
        state: _Partition = delivery.handle[0]
        return state.active and state.offsets.finished_after(min(delivery.handle[1]))

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
            source = self._source_topic(message)
            topic = kafka_dead_letter_topic(self._endpoint, source)
            width = self._log.create_topic(topic, self._log.partitions(source))
            envelope = kafka_dead_letter(self._endpoint, message, error, set(range(width)), source=source)
            await self._transport.publish(envelope)
        await self.ack(delivery)

    async def retry_later(self, delivery: Delivery, retry: Retry) -> None:
        """Republish to the retry topic of the record's source topic (confirmed), then mark it finished.

        The tier is the un-jittered back-off delay; a handler's own delay (``RetryLater(delay=...)``)
        waits in the longest tier within it. Either way the record is due ``retry.delay`` from now.
        """
        tier = kafka_retry_tier(self._tiers, retry)
        due_ms = due_at_ms(self._clock.time(), retry.delay)
        for message in delivery.message.records:
            source = self._source_topic(message)
            topic = kafka_retry_topic(source, tier)
            width = self._log.create_topic(topic, self._log.partitions(source))
            partitions = set(range(width))
            await self._transport.publish(
                kafka_retry(message, retry, topic=topic, due_ms=due_ms, partitions=partitions)
            )
        await self.ack(delivery)
