"""Settling the records a Kafka consumer handed out: finished, read again, or published on first.

A finished record's offset is marked in its partition's :class:`~listeners.kafka.commits.HeldPartition`
for the consumer's next commit. A failed record is published (confirmed) to the dead-letter topic or
to a retry topic of the topic it first came from, and only then marked finished, so a refused publish
leaves it uncommitted. A released record is read again by the consumer from the first unfinished
offset of its partition.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from listeners.deadletter.envelopes import kafka_dead_letter, kafka_retry
from listeners.deadletter.naming import kafka_dead_letter_topic
from listeners.kafka.commits import HeldPartition
from listeners.kafka.topics import ListenerTopics
from listeners.outcome import Retry
from listeners.retry.destinations import kafka_retry_tier, kafka_retry_topic
from listeners.retry.kafka_wire import due_at_ms
from listeners.tracing.spans import settling_sends
from listeners.transport.base import Delivery, Endpoint

if TYPE_CHECKING:
    from listeners.kafka.transport import KafkaTransport


class RecordSettler:
    """The Settler of one consumer's deliveries; a delivery's handle is the
    :class:`~listeners.kafka.commits.HeldPartition` its records (the message's offsets) came from."""

    def __init__(
        self,
        endpoint: Endpoint,
        transport: KafkaTransport,
        topics: ListenerTopics,
        read_again: Callable[[HeldPartition], None],
    ) -> None:
        self._endpoint = endpoint
        self._transport = transport
        self._topics = topics
        self._read_again = read_again
        self._batch = endpoint.options.batch
        self.finished_since_commit = 0
        """Records marked finished since the consumer's last commit; the consumer resets it."""

    def ack_now(self, delivery: Delivery) -> bool:
        state: HeldPartition = delivery.handle
        if state.active:
            if self._batch:
                records = delivery.message.records
                for record in records:
                    state.offsets.finish(record.offset)  # type: ignore[arg-type]  # set on every record
                self.finished_since_commit += len(records)
            else:
                state.offsets.finish(delivery.record.offset)  # type: ignore[attr-defined]  # a RecordDelivery
                self.finished_since_commit += 1
        return True

    def holds_back_finished(self, delivery: Delivery) -> bool:
        state: HeldPartition = delivery.handle
        offset = delivery.message.offset
        return state.active and offset is not None and state.offsets.finished_after(offset)

    async def ack(self, delivery: Delivery) -> None:
        self.ack_now(delivery)

    async def release(self, delivery: Delivery) -> None:
        self._read_again(delivery.handle)

    async def dead_letter(self, delivery: Delivery, error: BaseException) -> None:
        envelopes = []
        for message in delivery.message.records:
            source = self._topics.source_topic(message)
            partitions = await self._transport.partitions_for(kafka_dead_letter_topic(self._endpoint, source))
            envelopes.append(kafka_dead_letter(self._endpoint, message, error, partitions, source=source))
        with settling_sends("kafka", envelopes, delivery.message):
            await self._transport.publish_many(envelopes)
        await self.ack(delivery)

    async def retry_later(self, delivery: Delivery, retry: Retry) -> None:
        """Republish to the retry topic of the record's source topic (confirmed), then mark it finished."""
        tier = kafka_retry_tier(self._topics.tiers, retry)
        due_ms = due_at_ms(time.time(), retry.delay)
        envelopes = []
        for message in delivery.message.records:
            topic = kafka_retry_topic(self._topics.source_topic(message), tier)
            partitions = await self._transport.partitions_for(topic)
            envelopes.append(kafka_retry(message, retry, topic=topic, due_ms=due_ms, partitions=partitions))
        with settling_sends("kafka", envelopes, delivery.message):
            await self._transport.publish_many(envelopes)
        await self.ack(delivery)
