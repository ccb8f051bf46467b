"""KafkaTransport: a confirmed-publish producer, topic provisioning, and consumer workers per listener."""

from __future__ import annotations

import asyncio
import logging
import time

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from listeners.deadletter.naming import kafka_dead_letter_topic
from listeners.exceptions import TransportError
from listeners.kafka.clients import common_options, consumer_options, producer_options
from listeners.kafka.config import KafkaConfig
from listeners.kafka.delay import DelayTopics, listener_delay_topics
from listeners.kafka.errors import translate
from listeners.kafka.provisioning import create_topics
from listeners.kafka.worker import ConsumerWorker
from listeners.retry.delayed import is_delayed, kafka_delay_topic, kafka_delayed_envelope
from listeners.retry.destinations import kafka_retry_topics
from listeners.spec import TransportKind
from listeners.transport.base import DeliverySink, Endpoint, Envelope, PublishReceipt

log = logging.getLogger("listeners.kafka")


class KafkaTransport:
    """The Kafka transport on aiokafka (``listeners.kafka.bootstrap_servers`` is a real broker)."""

    kind: TransportKind = "kafka"
    name = "aiokafka"

    def __init__(self, config: KafkaConfig) -> None:
        self.config = config
        self._producer: AIOKafkaProducer | None = None
        self._delay_topics = DelayTopics(config)
        producer_options(config)  # pass-through options are checked now, before anything connects

    def describe(self) -> str:
        return self.config.display()

    async def start(self) -> None:
        producer = AIOKafkaProducer(**producer_options(self.config))
        try:
            await producer.start()
        except Exception as error:
            await producer.stop()
            raise translate(error, f"connecting to Kafka at {self.describe()}") from error
        self._producer = producer

    async def close(self) -> None:
        if self._producer is not None:
            producer, self._producer = self._producer, None
            await producer.stop()

    # publishing -----------------------------------------------------------------------------------

    async def publish(self, envelope: Envelope) -> PublishReceipt:
        [receipt] = await self.publish_many([envelope])
        return receipt

    async def publish_many(self, envelopes: list[Envelope]) -> list[PublishReceipt]:
        """Send all, then await every confirmation together (the producer batches them).

        An envelope with a delay goes to its topic's delay topic (see :mod:`listeners.kafka.delay`),
        due ``delay`` seconds after this call; its receipt names the delay topic.
        """
        producer = self._started_producer()
        if any(is_delayed(envelope.delay) for envelope in envelopes):
            envelopes = await self._delayed(producer, envelopes)
        futures = []
        for envelope in envelopes:
            try:
                futures.append(
                    await producer.send(
                        envelope.destination,
                        envelope.body,
                        key=envelope.key,
                        partition=envelope.partition,
                        headers=list(envelope.headers) if envelope.headers else None,
                    )
                )
            except Exception as error:
                raise translate(error, f"send to {envelope.destination}") from error
        receipts = []
        for envelope, future in zip(envelopes, futures, strict=True):
            try:
                metadata = await future
            except Exception as error:
                raise translate(error, f"send to {envelope.destination}") from error
            receipts.append(PublishReceipt(metadata.topic, metadata.partition, metadata.offset))
        return receipts

    async def _delayed(self, producer: AIOKafkaProducer, envelopes: list[Envelope]) -> list[Envelope]:
        now = time.time()
        routed = []
        for envelope in envelopes:
            if is_delayed(envelope.delay):
                await self._delay_topics.ensure(producer, envelope.destination)
                envelope = kafka_delayed_envelope(envelope, now)
            routed.append(envelope)
        return routed

    async def delay_topics_of(self, endpoint: Endpoint) -> dict[str, str]:
        """``{delay topic: topic}`` of ``endpoint``'s topics whose delay topic exists."""
        return await listener_delay_topics(self._started_producer(), endpoint)

    async def partitions_for(self, topic: str) -> set[int]:
        """Partitions of ``topic`` known to the producer's metadata (empty if it does not exist)."""
        try:
            return set(await self._started_producer().partitions_for(topic) or ())
        except Exception as error:
            log.debug("no partition metadata for %s: %s", topic, error)
            return set()

    def _started_producer(self) -> AIOKafkaProducer:
        if self._producer is None:
            raise TransportError("the Kafka transport is not started")
        return self._producer

    # topology -------------------------------------------------------------------------------------

    async def declare(self, endpoint: Endpoint) -> None:
        """With provisioning on: create missing source topics, and their delay topics (delayed sends),
        retry topics (non-blocking retries) and dead-letter topic as wide as them."""
        provisioning = self.config.provisioning
        if not provisioning.enabled:
            return
        admin = AIOKafkaAdminClient(**common_options(self.config))
        try:
            await admin.start()
            existing = set(await admin.list_topics())
            wanted = [
                NewTopic(topic, provisioning.partitions, provisioning.replication_factor)
                for topic in endpoint.sources
                if topic not in existing
            ]
            await create_topics(admin, wanted)
            dead_letters = endpoint.options.dead_letter.enabled
            derived = {
                topic: [
                    kafka_delay_topic(topic),
                    *kafka_retry_topics(endpoint.options, topic),
                    *([kafka_dead_letter_topic(endpoint, topic)] if dead_letters else []),
                ]
                for topic in endpoint.sources
            }
            if derived:
                widths = await self._widths(admin, endpoint.sources)
                replicas = provisioning.replication_factor
                followers = [
                    NewTopic(name, widths.get(topic, provisioning.partitions), replicas)
                    for topic, names in derived.items()
                    for name in names
                    if name not in existing
                ]
                await create_topics(admin, followers)
                for topic in endpoint.sources:
                    self._delay_topics.known(topic)
        except TransportError:
            raise
        except Exception as error:
            raise translate(error, f"provisioning topics of listener {endpoint.listener_id}") from error
        finally:
            await admin.close()

    async def _widths(self, admin: AIOKafkaAdminClient, topics: tuple[str, ...]) -> dict[str, int]:
        described = await admin.describe_topics(list(topics))
        return {entry["topic"]: len(entry["partitions"]) for entry in described if entry.get("partitions")}

    # consuming ------------------------------------------------------------------------------------

    def subscribe(self, endpoint: Endpoint, sink: DeliverySink) -> KafkaSubscription:
        return KafkaSubscription(self, endpoint, sink)


class KafkaSubscription:
    """``concurrency`` consumer workers of one listener, all in its group."""

    def __init__(self, transport: KafkaTransport, endpoint: Endpoint, sink: DeliverySink) -> None:
        self._endpoint = endpoint
        self._transport = transport
        options = consumer_options(transport.config, endpoint)
        self._workers = [
            ConsumerWorker(AIOKafkaConsumer(**options), endpoint, sink, transport.config, transport)
            for _ in range(endpoint.options.concurrency)
        ]

    def describe(self) -> str:
        return f"{self._endpoint.describe_sources()} group={self._endpoint.group_id}"

    @property
    def consuming(self) -> bool:
        """Every worker joined the group and polls successfully."""
        return all(worker.consuming for worker in self._workers)

    def consumer_lag(self) -> list[tuple[str, int | None, int]]:
        """High watermark minus committed offset per assigned partition (see ``ConsumerWorker``)."""
        return [entry for worker in self._workers for entry in worker.consumer_lag()]

    async def start(self) -> None:
        delay_topics = await self._transport.delay_topics_of(self._endpoint)
        await asyncio.gather(*(worker.start(delay_topics) for worker in self._workers))

    async def stop(self) -> None:
        await asyncio.gather(*(worker.stop_fetching() for worker in self._workers))

    async def close(self) -> None:
        await asyncio.gather(*(worker.close() for worker in self._workers), return_exceptions=True)
