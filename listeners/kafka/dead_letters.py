"""Dead-letter topics on Kafka: read without a consumer group, replay by republishing.

A browse assigns every partition of the topic to a consumer that has no group, starts at the
beginning (or at the first offset at or after ``since``), and reads up to the end offsets taken when
it started; nothing is committed, so nothing about the topic changes. Records fetched together with
the last one are kept even if past that end: Tansu reports a partition's end as its last batch's
first offset + 1, so stopping exactly there would miss the rest of that batch.

Kafka cannot delete single records: a replayed dead letter stays in its topic.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.structs import ConsumerRecord

from listeners.deadletter.store import StoredDeadLetter
from listeners.exceptions import TransportError
from listeners.kafka.clients import common_options
from listeners.kafka.errors import translate
from listeners.kafka.transport import KafkaTransport
from listeners.spec import TransportKind
from listeners.transport.base import Envelope

POLL_MS = 500
IDLE_TIMEOUT = 10.0
"""Seconds without a record after which reading a partition that has not reached its end fails."""


class KafkaDeadLetters:
    """Dead-letter topics of the aiokafka transport."""

    kind: TransportKind = "kafka"
    removes_replayed = False

    def __init__(self, transport: KafkaTransport, *, idle_timeout: float = IDLE_TIMEOUT) -> None:
        self._transport = transport
        self._idle_timeout = idle_timeout

    @asynccontextmanager
    async def browse(self, destination: str, *, since: float | None = None) -> AsyncIterator[_TopicBrowse]:
        consumer = AIOKafkaConsumer(
            **common_options(self._transport.config),
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
        )
        where = f"{destination!r} on {self._transport.describe()}"
        try:
            await consumer.start()
            if destination not in await consumer.topics():
                raise TransportError(f"no topic {where}")
            partitions = sorted(consumer.partitions_for_topic(destination) or ())
            tps = [TopicPartition(destination, partition) for partition in partitions]
            consumer.assign(tps)
            ends: dict[TopicPartition, int] = await consumer.end_offsets(tps)
            starts = await self._starts(consumer, tps, ends, since)
        except Exception as error:
            await consumer.stop()
            raise translate(error, f"opening the dead-letter topic {where}") from error
        try:
            yield _TopicBrowse(consumer, starts, ends, self._idle_timeout)
        finally:
            await consumer.stop()

    async def replay(self, letter: StoredDeadLetter, envelope: Envelope) -> None:
        await self._transport.publish(envelope)

    @staticmethod
    async def _starts(
        consumer: AIOKafkaConsumer,
        tps: list[TopicPartition],
        ends: dict[TopicPartition, int],
        since: float | None,
    ) -> dict[TopicPartition, int]:
        starts: dict[TopicPartition, int] = await consumer.beginning_offsets(tps)
        if since is not None:
            found = await consumer.offsets_for_times({tp: int(since * 1000) for tp in tps})
            # None: nothing at or after ``since``. Tansu answers with a batch's first offset, which is
            # no later than the record asked for; the caller's filter drops what is older.
            starts = {tp: ends[tp] if found.get(tp) is None else found[tp].offset for tp in tps}
        for tp, offset in starts.items():
            consumer.seek(tp, offset)
        return starts


class _TopicBrowse:
    """The records of one topic from ``starts`` to ``ends``, partitions read together."""

    def __init__(
        self,
        consumer: AIOKafkaConsumer,
        starts: dict[TopicPartition, int],
        ends: dict[TopicPartition, int],
        idle_timeout: float,
    ) -> None:
        self._consumer = consumer
        self._starts = starts
        self._ends = ends
        self._idle_timeout = idle_timeout
        self.total = sum(max(0, ends[tp] - starts[tp]) for tp in ends)

    async def __aiter__(self) -> AsyncIterator[StoredDeadLetter]:
        consumer = self._consumer
        remaining = {tp for tp in self._ends if self._starts[tp] < self._ends[tp]}
        consumer.pause(*(set(self._ends) - remaining))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._idle_timeout
        while remaining:
            try:
                fetched: dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]] = await consumer.getmany(
                    timeout_ms=POLL_MS
                )
            except Exception as error:
                raise translate(error, f"reading {_names(remaining)}") from error
            for records in fetched.values():
                for record in records:
                    yield _letter(record)
            for tp in list(remaining):
                if await consumer.position(tp) >= self._ends[tp]:
                    remaining.discard(tp)
                    consumer.pause(tp)
            if fetched:
                deadline = loop.time() + self._idle_timeout
            elif loop.time() > deadline:
                raise TransportError(
                    f"reading {_names(remaining)} stopped short of the end offsets: "
                    f"no records for {self._idle_timeout:g}s"
                )


def _letter(record: ConsumerRecord[bytes, bytes]) -> StoredDeadLetter:
    timestamp: Any = record.timestamp
    return StoredDeadLetter(
        record.topic,
        record.value or b"",
        tuple(record.headers or ()),
        key=record.key,
        partition=record.partition,
        offset=record.offset,
        timestamp=timestamp / 1000 if isinstance(timestamp, int) else None,
    )


def _names(tps: set[TopicPartition]) -> str:
    return ", ".join(f"{tp.topic}[{tp.partition}]" for tp in sorted(tps))
