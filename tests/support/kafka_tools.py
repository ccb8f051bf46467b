"""Reading Kafka topics in tests (dead-letter topics, what was produced), without a consumer group."""

from __future__ import annotations

import asyncio

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.structs import ConsumerRecord


async def read_topic(bootstrap: str, topic: str) -> list[ConsumerRecord[bytes, bytes]]:
    """Every record of ``topic`` now, partition by partition; empty if the topic does not exist."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest"
    )
    await consumer.start()
    try:
        if topic not in await consumer.topics():  # also refreshes the metadata
            return []
        partitions = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, partition) for partition in sorted(partitions)]
        if not tps:
            return []
        consumer.assign(tps)
        ends = await consumer.end_offsets(tps)
        await consumer.seek_to_beginning(*tps)
        records: list[ConsumerRecord[bytes, bytes]] = []
        remaining = {tp for tp in tps if ends[tp] > 0}
        deadline = asyncio.get_running_loop().time() + 10
        while asyncio.get_running_loop().time() < deadline:
            # Fetching every assigned partition: asking for a subset sometimes never returned records.
            batch = await consumer.getmany(timeout_ms=200)
            for tp, fetched in batch.items():
                records.extend(fetched)
                if fetched and fetched[-1].offset + 1 >= ends[tp]:
                    remaining.discard(tp)
            # Tansu reports the end of a partition as its last batch's first offset + 1, so reaching
            # it is not the end: stop at the first empty poll after it.
            if not remaining and not batch:
                break
        if remaining:
            raise AssertionError(f"could not read {topic} to its end: {sorted(str(tp) for tp in remaining)}")
        return sorted(records, key=lambda record: (record.partition, record.offset))
    finally:
        await consumer.stop()
