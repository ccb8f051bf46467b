"""Kafka test helpers: apps on the run's broker, group offsets, topic ends."""

from __future__ import annotations

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from tests.support.brokers import KafkaBroker


async def committed(broker: KafkaBroker, group: str, topic: str) -> dict[int, int | None]:
    """The group's committed position per partition of ``topic``."""
    consumer = AIOKafkaConsumer(bootstrap_servers=broker.bootstrap, group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        await consumer.topics()
        partitions = sorted(consumer.partitions_for_topic(topic) or ())
        return {p: await consumer.committed(TopicPartition(topic, p)) for p in partitions}
    finally:
        await consumer.stop()


async def end_offsets(broker: KafkaBroker, topic: str) -> dict[int, int]:
    """ListOffsets(latest) per partition. On Tansu this is the last batch's first offset + 1, not the
    end, whenever records were produced in batches: compare with handled offsets instead."""
    consumer = AIOKafkaConsumer(bootstrap_servers=broker.bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        await consumer.topics()
        tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        return {tp.partition: offset for tp, offset in (await consumer.end_offsets(tps)).items()}
    finally:
        await consumer.stop()


async def create_topic(broker: KafkaBroker, topic: str, partitions: int) -> None:
    from aiokafka.admin import NewTopic

    admin = AIOKafkaAdminClient(bootstrap_servers=broker.bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, partitions, 1)])
    finally:
        await admin.close()


async def partition_count(broker: KafkaBroker, topic: str) -> int:
    return len(await end_offsets(broker, topic))
