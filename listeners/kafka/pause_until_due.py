"""Pause-until-due: a retry- or delay-topic record runs no earlier than its due time.

A record that is not due yet pauses its partition at itself (the consumer seeks back to it), while the
consumer's other partitions keep flowing; the fetch loop resumes the partition once it is due and the
record is fetched again. The due time is the ``retry_topic-backoff-timestamp`` header of a retry-topic
record, the delayed send's due time of a delay-topic record (see :mod:`listeners.kafka.delay`).
"""

from __future__ import annotations

import time
from collections.abc import Iterable

from aiokafka import AIOKafkaConsumer, TopicPartition

from listeners.kafka.topics import ListenerTopics
from listeners.message import Message


class PauseUntilDue:
    """The partitions of one consumer that are paused at a record until it is due."""

    def __init__(self, consumer: AIOKafkaConsumer, topics: ListenerTopics) -> None:
        self._consumer = consumer
        self._topics = topics
        self.until: dict[TopicPartition, float] = {}
        """``{partition: epoch seconds}`` when the record it is paused at is due."""

    def wait_until_due(self, tp: TopicPartition, message: Message) -> bool:
        """If ``message`` is not due yet: pause its partition at it until it is, and return True (the
        caller drops what it holds of that partition from this record on)."""
        due_ms = self._topics.due_ms(message)
        if due_ms is None or due_ms <= time.time() * 1000:
            return False
        self.until[tp] = due_ms / 1000
        self._consumer.pause(tp)
        self._consumer.seek(tp, message.offset)
        return True

    def resume_due(self, assigned: set[TopicPartition], paused_by_backpressure: set[TopicPartition]) -> None:
        """Resume the partitions whose record is due now, unless revoked or paused for backpressure."""
        now = time.time()
        due = [tp for tp, until in self.until.items() if until <= now]
        for tp in due:
            del self.until[tp]
            if tp in assigned and tp not in paused_by_backpressure:
                self._consumer.resume(tp)

    def forget(self, revoked: Iterable[TopicPartition]) -> None:
        """Revoked partitions wait no more here (their next owner reads the record's due time again)."""
        for tp in revoked:
            self.until.pop(tp, None)
