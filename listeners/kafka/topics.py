"""The topics one listener's consumer reads, and the Message each of their records becomes.

Besides its own topics, a consumer reads the delay topics of those topics (``<topic>-delay``, users'
delayed sends, see :mod:`listeners.kafka.delay`) and, for a non-blocking listener, their retry topics
(``<topic>-retry-<delayMs>``). Records of both carry a due time; a delay-topic record is handed out as
a first delivery of ``<topic>``, a retry-topic record with the attempt its retry headers say.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.structs import ConsumerRecord

from listeners.kafka.delay import (
    delayed_due_ms,
    delayed_message,
    pattern_delay_source,
    subscription_pattern,
)
from listeners.message import EMPTY_HEADERS, Headers, Message
from listeners.retry.destinations import kafka_retry_topics, kafka_source_topic, retry_tiers
from listeners.retry.kafka_wire import retry_state
from listeners.transport.base import Endpoint


class ListenerTopics:
    """One listener's topics, retry topics and delay topics; reads their records as Messages."""

    def __init__(self, endpoint: Endpoint) -> None:
        self._endpoint = endpoint
        self._listener_id = endpoint.listener_id
        self._group_id = endpoint.group_id
        self.tiers = retry_tiers(endpoint.options)
        """Delays (ms) of the retry topics; empty unless the listener retries non-blocking."""
        self._retry_topics = frozenset(
            topic for source in endpoint.sources for topic in kafka_retry_topics(endpoint.options, source)
        )
        self.delay_sources: dict[str, str] = {}
        """``{delay topic: the topic its records are for}``."""

    def subscribe(
        self,
        consumer: AIOKafkaConsumer,
        delay_topics: Mapping[str, str] | None,
        listener: ConsumerRebalanceListener,
    ) -> None:
        """Subscribe ``consumer`` to the listener's topics, their retry topics and ``delay_topics``
        (``{delay topic: topic}``, those that exist); a pattern covers its delay topics itself."""
        self.delay_sources = dict(delay_topics or {})
        pattern = self._endpoint.options.topic_pattern
        if pattern:  # the delay topics (and retry topics) of every matching topic too
            consumer.subscribe(pattern=subscription_pattern(pattern, bool(self.tiers)), listener=listener)
        else:
            topics = [*self._endpoint.sources, *sorted(self._retry_topics), *sorted(self.delay_sources)]
            consumer.subscribe(topics=topics, listener=listener)

    def learn_delay_topics(self, assigned: Iterable[TopicPartition]) -> None:
        """A pattern listener's delay topics are known once assigned: note those among ``assigned``."""
        pattern = self._endpoint.options.topic_pattern
        if pattern:
            for tp in assigned:
                source = pattern_delay_source(tp.topic, pattern)
                if source is not None:
                    self.delay_sources[tp.topic] = source

    def is_delayed(self, topic: str) -> bool:
        """One of this listener's retry or delay topics: its records carry due times."""
        if topic in self.delay_sources:
            return True
        return bool(self.tiers) and (topic in self._retry_topics or _looks_like_retry_topic(topic))

    def source_topic(self, message: Message) -> str:
        """The topic a record first came from, by name: never from its headers, since a listener of a
        dead-letter topic must not send its records back where their kafka_*original-topic points."""
        topic = message.destination
        return kafka_source_topic(topic) if self.is_delayed(topic) else topic

    def due_ms(self, message: Message) -> int | None:
        """When a retry- or delay-topic record is due (epoch ms), None if at once."""
        raw = message.raw
        if raw is not None and raw.topic in self.delay_sources:
            return delayed_due_ms(raw)
        return retry_state(message.headers).due_ms

    def message(self, record: ConsumerRecord[bytes, bytes]) -> Message:
        """A record of the listener's own topics or of its retry topics."""
        headers = Headers(tuple(record.headers)) if record.headers else EMPTY_HEADERS
        timestamp = record.timestamp
        # Positional: keyword arguments cost a measurable share of the per-record budget here.
        return Message(
            record.value or b"",
            headers,
            record.topic,
            self._listener_id,
            "kafka",
            record.key,
            record.partition,
            record.offset,
            timestamp / 1000 if timestamp is not None else None,
            retry_state(headers).attempt if headers.pairs and self.is_delayed(record.topic) else 1,
            None,  # exchange
            None,  # routing_key
            False,  # redelivered
            self._group_id,
            (),  # batch
            record,
        )

    def delayed_message(self, record: ConsumerRecord[bytes, bytes]) -> Message:
        """A delay-topic record, as the first delivery of the topic it is for."""
        return delayed_message(record, self.delay_sources[record.topic], self._listener_id, self._group_id)


def _looks_like_retry_topic(topic: str) -> bool:
    """A pattern subscription's retry topics are not known in advance."""
    return kafka_source_topic(topic) != topic
