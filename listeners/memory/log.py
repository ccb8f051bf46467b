"""The embedded broker's Kafka side: partitioned topics, consumer groups, committed offsets, rebalances."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Coroutine, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from listeners.clock import Clock
from listeners.memory.partitioner import partition_for_key
from listeners.message import HeaderPairs

TopicPartition = tuple[str, int]


@dataclass(frozen=True, slots=True)
class LogRecord:
    """One record as stored: offset within its partition, key, value, headers, timestamp (epoch s)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    headers: HeaderPairs
    timestamp: float


class MemoryLog:
    """Topics made of partitions, each an append-only list of records.

    Records with a key go to Kafka's murmur2 partition for it; records without one go round-robin.
    Topics are created on first use with ``default_partitions`` (Kafka's auto-create).
    """

    def __init__(self, clock: Clock, default_partitions: int = 3) -> None:
        self._clock = clock
        self.default_partitions = default_partitions
        self._topics: dict[str, list[list[LogRecord]]] = {}
        self._groups: dict[str, MemoryGroup] = {}
        self._round_robin = itertools.count()
        self._appended = asyncio.Event()
        self.activity = 0
        """Grows with every append and every commit that moves a position (lets tests see progress)."""

    def create_topic(self, name: str, partitions: int | None = None) -> int:
        """Create ``name`` if missing; return its partition count."""
        if name not in self._topics:
            self._topics[name] = [[] for _ in range(partitions or self.default_partitions)]
        return len(self._topics[name])

    def topics(self) -> list[str]:
        return sorted(self._topics)

    def partitions(self, topic: str) -> int:
        """Partition count of ``topic`` (created if missing)."""
        return self.create_topic(topic)

    def append(
        self,
        topic: str,
        value: bytes,
        *,
        key: bytes | None = None,
        headers: HeaderPairs = (),
        partition: int | None = None,
        timestamp: float | None = None,
    ) -> LogRecord:
        """Append a record and wake waiting consumers."""
        count = self.create_topic(topic)
        if partition is None:
            partition = partition_for_key(key, count) if key is not None else next(self._round_robin) % count
        elif not 0 <= partition < count:
            raise ValueError(f"topic {topic!r} has no partition {partition} (it has {count})")
        records = self._topics[topic][partition]
        record = LogRecord(
            topic,
            partition,
            len(records),
            key,
            value,
            headers,
            self._clock.time() if timestamp is None else timestamp,
        )
        records.append(record)
        self.activity += 1
        self._appended.set()
        self._appended = asyncio.Event()
        return record

    def read(self, topic: str, partition: int, offset: int, limit: int) -> list[LogRecord]:
        """Up to ``limit`` records of one partition from ``offset`` on."""
        return self._topics[topic][partition][offset : offset + limit]

    def end_offset(self, topic: str, partition: int) -> int:
        """The offset the next record of this partition will get."""
        return len(self._topics[topic][partition])

    def records(self, topic: str) -> list[LogRecord]:
        """Every record of ``topic``, partition by partition (for tests and tools)."""
        return [record for partition in self._topics.get(topic, []) for record in partition]

    def wait_for_append(self) -> Coroutine[Any, Any, bool]:
        """Await it to return after the next append to any topic from the moment of this call on.

        A plain function: the append it waits for is fixed when it is called, not when a task wrapping
        it first runs, so an append by a task that runs in between is not missed.
        """
        return self._appended.wait()

    def group(self, group_id: str) -> MemoryGroup:
        """The consumer group ``group_id``, created on first use."""
        if group_id not in self._groups:
            self._groups[group_id] = MemoryGroup(group_id, self)
        return self._groups[group_id]


class GroupMember(Protocol):
    """A consumer in a group. ``revoke`` finishes (or releases) in-flight work and commits first."""

    member_id: str
    topics: tuple[str, ...]

    async def revoke(self, partitions: set[TopicPartition]) -> None: ...

    async def assign(self, partitions: set[TopicPartition]) -> None: ...


class MemoryGroup:
    """Committed offsets and the members sharing a group's partitions (range assignment per topic)."""

    def __init__(self, group_id: str, log: MemoryLog) -> None:
        self.group_id = group_id
        self._log = log
        self._members: list[GroupMember] = []
        self._assignment: dict[str, set[TopicPartition]] = {}
        self._committed: dict[TopicPartition, int] = {}
        self._lock = asyncio.Lock()

    def committed(self, partition: TopicPartition) -> int | None:
        """The committed position (next offset to read), or None if never committed."""
        return self._committed.get(partition)

    def commit(self, offsets: Mapping[TopicPartition, int]) -> None:
        """Store positions; a position never moves backwards through a commit."""
        for partition, position in offsets.items():
            previous = self._committed.get(partition)
            if previous is None or position > previous:
                self._committed[partition] = position
                self._log.activity += 1

    def assignment(self, member_id: str) -> set[TopicPartition]:
        return set(self._assignment.get(member_id, set()))

    async def join(self, member: GroupMember) -> None:
        async with self._lock:
            self._members.append(member)
            await self._rebalance()

    async def leave(self, member: GroupMember) -> None:
        async with self._lock:
            if member not in self._members:
                return
            owned = self._assignment.pop(member.member_id, set())
            if owned:
                await member.revoke(owned)
            self._members.remove(member)
            await self._rebalance()

    async def _rebalance(self) -> None:
        target = self._target_assignment()
        # Eager protocol, as Kafka's classic one: every lost partition is revoked (and committed)
        # before anyone is given it.
        for member in self._members:
            lost = self._assignment.get(member.member_id, set()) - target[member.member_id]
            if lost:
                await member.revoke(lost)
        previous = self._assignment
        self._assignment = target
        for member in self._members:
            gained = target[member.member_id] - previous.get(member.member_id, set())
            if gained:
                await member.assign(gained)

    def _target_assignment(self) -> dict[str, set[TopicPartition]]:
        target: dict[str, set[TopicPartition]] = {member.member_id: set() for member in self._members}
        topics = sorted({topic for member in self._members for topic in member.topics})
        for topic in topics:
            subscribers = sorted(member.member_id for member in self._members if topic in member.topics)
            count = self._log.partitions(topic)
            per_member, extra = divmod(count, len(subscribers))
            start = 0
            for index, member_id in enumerate(subscribers):
                size = per_member + (1 if index < extra else 0)
                target[member_id].update((topic, partition) for partition in range(start, start + size))
                start += size
        return target
