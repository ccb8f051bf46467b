"""Delayed sends on Kafka: the delay topic ``<topic>-delay``, written to and consumed with pause-until-due.

``KafkaPublisher.send(topic, value, delay=s)`` writes the record to ``<topic>-delay`` instead of
``<topic>`` (see :mod:`listeners.retry.delayed` for the record's shape). The first delayed send to a
topic checks, from the producer's metadata, that its delay topic exists and remembers it; with
``listeners.kafka.provisioning.enabled`` a missing one is created as wide as the topic, otherwise the
send fails naming both topics. Provisioning a listener creates the delay topic of each of its topics.

Every Kafka listener consumes the delay topics of its topics that exist when it starts (a pattern
listener: every ``<matching topic>-delay``). A delay-topic record is held (its partition paused at
it, other partitions flowing) until its due time and then handed to the handler as a first delivery
of ``<topic>``: ``destination`` is the topic, ``attempt`` 1, headers as sent (the due-time header
removed); ``partition`` and ``offset`` are the delay topic's. If it fails it takes the listener's
retry and dead-letter path of ``<topic>``. Its offsets are committed on the delay topic.

What this gives and what it does not:

- every consumer group of the topic that runs listeners gets the record once, as if it had been sent
  to the topic at its due time; consumers outside this framework reading the topic never see it;
- within one partition of the delay topic, records run in order: a record waits behind an earlier one
  of the same partition that is due later (the same key goes to the same partition);
- a listener consumes the delay topics that existed when it started; one created later is read after
  its next start (pattern listeners pick it up on their next metadata refresh).
"""

from __future__ import annotations

import asyncio
import logging
import re
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.admin import NewTopic
from aiokafka.structs import ConsumerRecord

from listeners.exceptions import TransportError
from listeners.kafka.config import KafkaConfig
from listeners.kafka.errors import translate
from listeners.kafka.provisioning import create_topics_now
from listeners.message import EMPTY_HEADERS, Headers, Message
from listeners.retry.delayed import (
    is_kafka_delay_topic,
    kafka_delay_topic,
    kafka_delayed_headers,
    kafka_delayed_source,
)
from listeners.transport.base import Endpoint

log = logging.getLogger("listeners.kafka")


async def topic_widths(producer: AIOKafkaProducer) -> dict[str, int]:
    """Partition count of every topic the cluster has now (one metadata request; creates nothing)."""
    cluster: Any = await producer.client.fetch_all_metadata()
    return {topic: len(cluster.partitions_for_topic(topic) or ()) for topic in cluster.topics()}


class DelayTopics:
    """The producer's side: makes sure a topic's delay topic exists before the first delayed send."""

    def __init__(self, config: KafkaConfig) -> None:
        self._config = config
        self._ready: set[str] = set()  # topics whose delay topic is known to exist
        self._checking = asyncio.Lock()

    def known(self, topic: str) -> None:
        """``topic``'s delay topic exists (provisioned with a listener)."""
        self._ready.add(topic)

    async def ensure(self, producer: AIOKafkaProducer, topic: str) -> None:
        """Check (once per topic) that ``<topic>-delay`` exists; create it when provisioning is on."""
        if topic in self._ready:
            return
        async with self._checking:
            if topic in self._ready:
                return
            delay_topic = kafka_delay_topic(topic)
            try:
                widths = await topic_widths(producer)
                if not widths.get(delay_topic):
                    await self._create(delay_topic, topic, widths)
            except TransportError:
                raise
            except Exception as error:
                raise translate(error, f"checking the delay topic {delay_topic}") from error
            self._ready.add(topic)

    async def _create(self, delay_topic: str, topic: str, widths: dict[str, int]) -> None:
        provisioning = self._config.provisioning
        if not provisioning.enabled:
            raise TransportError(
                f"a delayed send to topic {topic!r} needs the topic {delay_topic!r}, which does not exist: "
                f"create it with as many partitions as {topic!r}, or set "
                "listeners.kafka.provisioning.enabled: true to have it created"
            )
        width = widths.get(topic) or provisioning.partitions
        await create_topics_now(self._config, [NewTopic(delay_topic, width, provisioning.replication_factor)])


async def listener_delay_topics(producer: AIOKafkaProducer, endpoint: Endpoint) -> dict[str, str]:
    """``{delay topic: topic}`` for the listener's topics whose delay topic exists now (one INFO line
    names those that do not: delayed sends to those topics cannot be written until it is created)."""
    sources = endpoint.sources
    if not sources:
        return {}
    wanted = {kafka_delay_topic(topic): topic for topic in sources}
    try:
        widths = await topic_widths(producer)
    except Exception as error:
        raise translate(error, f"looking up the delay topics of listener {endpoint.listener_id}") from error
    found = {name: topic for name, topic in wanted.items() if widths.get(name) and name not in sources}
    missing = sorted(name for name in wanted if name not in found and name not in sources)
    if missing:
        log.info(
            "listener %s: no delay topic %s, so delayed sends to %s are not consumed "
            "(listeners.kafka.provisioning.enabled creates them)",
            endpoint.listener_id,
            ", ".join(missing),
            ", ".join(kafka_delayed_source(name) for name in missing),
        )
    return found


def subscription_pattern(pattern: str, non_blocking: bool) -> str:
    """A pattern listener's regex, extended to the delay topics (and retry topics if non-blocking) of
    every matching topic; anchored at the end, as Kafka patterns match whole topic names."""
    suffixes = r"-retry-\d+|-delay" if non_blocking else "-delay"
    return rf"(?:{pattern})(?:{suffixes})?$"


def pattern_delay_source(topic: str, pattern: str) -> str | None:
    """For a pattern listener: the topic whose delay topic ``topic`` is, if it is one."""
    if not is_kafka_delay_topic(topic):
        return None
    source = kafka_delayed_source(topic)
    return source if re.fullmatch(pattern, source) else None


def delayed_message(
    record: ConsumerRecord[bytes, bytes], source: str, listener_id: str, group_id: str
) -> Message:
    """A delay-topic record as the first delivery of ``source``, without its due-time header."""
    pairs, _ = kafka_delayed_headers(tuple(record.headers) if record.headers else ())
    timestamp = record.timestamp
    return Message(
        record.value or b"",
        Headers(pairs) if pairs else EMPTY_HEADERS,
        source,
        listener_id,
        "kafka",
        key=record.key,
        partition=record.partition,
        offset=record.offset,
        timestamp=timestamp / 1000 if timestamp is not None else None,
        attempt=1,
        group_id=group_id,
        raw=record,
    )


def delayed_due_ms(record: ConsumerRecord[bytes, bytes]) -> int | None:
    """When a delay-topic record is due (epoch ms), None if at once."""
    return kafka_delayed_headers(tuple(record.headers) if record.headers else ())[1]


def record_topic(message: Message) -> str:
    """The topic a consumed message was read from (a delay-topic record's ``destination`` is its
    source topic)."""
    raw = message.records[0].raw
    return str(raw.topic) if raw is not None else message.destination
