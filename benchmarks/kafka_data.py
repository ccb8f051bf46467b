"""Preparing and checking the data of a Kafka case: a fresh topic, N records produced, committed offsets.

None of this is measured. ``python -m benchmarks.kafka_data --bootstrap X --topic T --messages N``
produces a topic by hand, e.g. to profile one case on its own.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
from collections.abc import Iterable

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from benchmarks.payload import payload

SEND_WINDOW = 5_000
"""Sends awaited together: enough to keep the producer's batches full, bounded in memory."""

Ends = dict[int, int]
"""Partition -> end offset (one past the last record)."""


async def create_topic(bootstrap: str, topic: str, partitions: int) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, partitions, 1)])
    finally:
        await admin.close()


async def delete_topic(bootstrap: str, topic: str) -> None:
    """Free the broker's memory after a run; a broker that cannot delete topics just keeps it."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        with contextlib.suppress(Exception):
            await admin.delete_topics([topic])
    finally:
        await admin.close()


async def produce(bootstrap: str, topic: str, messages: int) -> Ends:
    """Send ``messages`` keyed records, pipelined; return every partition's end offset."""
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks=1, linger_ms=5, max_batch_size=256 * 1024, enable_idempotence=False
    )
    await producer.start()
    ends: Ends = {}
    try:
        for start in range(0, messages, SEND_WINDOW):
            futures = []
            for index in range(start, min(start + SEND_WINDOW, messages)):
                key, value = payload(index)
                futures.append(await producer.send(topic, value, key=key))
            for metadata in await asyncio.gather(*futures):
                ends[metadata.partition] = max(ends.get(metadata.partition, 0), metadata.offset + 1)
    finally:
        await producer.stop()
    return ends


async def prepare(bootstrap: str, topic: str, partitions: int, messages: int) -> Ends:
    await create_topic(bootstrap, topic, partitions)
    return await produce(bootstrap, topic, messages)


async def committed(bootstrap: str, group_id: str, topic: str, partitions: Iterable[int]) -> Ends:
    """The offsets ``group_id`` committed on ``topic`` (asked without joining the group).

    A consumer's OffsetFetch rather than the admin client's: Tansu drops the connection on the latter.
    """
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group_id, enable_auto_commit=False)
    await consumer.start()
    try:
        offsets = {
            partition: await consumer.committed(TopicPartition(topic, partition)) for partition in partitions
        }
    finally:
        await consumer.stop()
    return {partition: offset for partition, offset in offsets.items() if offset is not None}


async def end_offsets(bootstrap: str, topic: str) -> tuple[Ends, int]:
    """``topic``'s end offsets (one past each partition's last record) and its record count, read back
    record by record: Tansu answers ListOffsets with the first offset of a partition's last batch."""
    from tests.support.kafka_tools import read_topic

    records = await read_topic(bootstrap, topic)
    ends: Ends = {}
    for record in records:
        ends[record.partition] = max(ends.get(record.partition, 0), record.offset + 1)
    return ends, len(records)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.kafka_data", description=__doc__)
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--messages", type=int, default=50_000)
    parser.add_argument("--partitions", type=int, default=3)
    args = parser.parse_args()
    ends = asyncio.run(prepare(args.bootstrap, args.topic, args.partitions, args.messages))
    print(f"{args.topic}: {sum(ends.values())} records, end offsets {dict(sorted(ends.items()))}")


if __name__ == "__main__":
    main()
