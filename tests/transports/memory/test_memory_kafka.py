"""The embedded broker's Kafka face: partitioning, groups, committed offsets, rebalances, delays."""

from __future__ import annotations

import asyncio
from typing import Any

from listeners import ManualClock, Message, kafka_listener
from listeners.memory import MemoryBroker
from listeners.memory.partitioner import partition_for_key
from listeners.testing import running
from tests.contract.configs import unique
from tests.support.apps import app_with


class Recorder:
    """Records (partition, offset, text); ``gate`` holds handlers until set."""

    def __init__(self) -> None:
        self.seen: list[tuple[int, int, str]] = []
        self.gate: asyncio.Event | None = None
        self.entered = asyncio.Event()

    async def record(self, text: str, message: Message) -> None:
        self.entered.set()
        if self.gate is not None:
            await self.gate.wait()
        assert message.partition is not None
        assert message.offset is not None
        self.seen.append((message.partition, message.offset, text))


def recorder(topic: str, listener_id: str = "rec", **options: Any) -> Recorder:
    """A Recorder whose class declares a Kafka listener on ``topic`` (declarations live on classes)."""

    class Declared(Recorder):
        @kafka_listener(topic, id=listener_id, **options)
        async def handle(self, text: str, message: Message) -> None:
            await self.record(text, message)

    return Declared()


def committed(broker: MemoryBroker, group: str, topic: str) -> dict[int, int | None]:
    return {p: broker.log.group(group).committed((topic, p)) for p in range(broker.log.partitions(topic))}


def ends(broker: MemoryBroker, topic: str) -> dict[int, int]:
    return {p: broker.log.end_offset(topic, p) for p in range(broker.log.partitions(topic))}


async def test_keys_go_to_their_murmur2_partition_and_keyless_records_spread() -> None:
    topic = unique("part")
    broker = MemoryBroker(partitions=4)
    async with running(app_with(broker=broker)) as app:
        keyed = [await app.kafka.send(topic, "v", key=f"customer-{n}") for n in range(20)]
        keyless = [await app.kafka.send(topic, "v") for _ in range(8)]
    for n, receipt in enumerate(keyed):
        assert receipt.partition == partition_for_key(f"customer-{n}".encode(), 4)
    assert sorted({receipt.partition for receipt in keyless}) == [0, 1, 2, 3]


async def test_a_group_splits_partitions_and_commits_every_finished_record() -> None:
    topic = unique("group")
    broker = MemoryBroker(partitions=4)
    first, second = recorder(topic, group_id="shared"), recorder(topic, group_id="shared")
    async with (
        running(app_with(broker=broker, handlers=first)) as one,
        running(app_with(broker=broker, handlers=second)),
    ):
        for n in range(80):
            await one.kafka.send(topic, str(n), key=str(n))
        await one.wait_for(lambda: len(first.seen) + len(second.seen) == 80)
        assert first.seen, "both members got partitions"
        assert second.seen, "both members got partitions"
        assert {p for p, _, _ in first.seen}.isdisjoint({p for p, _, _ in second.seen})
        await one.wait_for(lambda: committed(broker, "shared", topic) == ends(broker, topic))
    assert sorted(int(text) for _, _, text in first.seen + second.seen) == list(range(80))


async def test_a_restarted_group_resumes_after_its_committed_offsets() -> None:
    topic = unique("resume")
    broker = MemoryBroker(partitions=2)
    before = recorder(topic)
    async with running(app_with(broker=broker, handlers=before)) as app:
        for n in range(10):
            await app.kafka.send(topic, f"old-{n}")
        await app.wait_for(lambda: len(before.seen) == 10)
    after = recorder(topic)
    async with running(app_with(broker=broker, handlers=after)) as app:
        await app.kafka.send(topic, "new")
        await app.wait_for(lambda: len(after.seen) == 1)
    assert [text for _, _, text in after.seen] == ["new"]


async def test_latest_offset_reset_skips_what_was_published_before_the_group_existed() -> None:
    topic = unique("latest")
    broker = MemoryBroker(partitions=1)
    latest = recorder(topic, auto_offset_reset="latest")
    async with running(app_with(broker=broker)) as app:
        await app.kafka.send(topic, "before")
    async with running(app_with(broker=broker, handlers=latest)) as app:
        await app.kafka.send(topic, "after")
        await app.wait_for(lambda: len(latest.seen) == 1)
    assert [text for _, _, text in latest.seen] == ["after"]


async def test_rebalance_waits_for_in_flight_records_and_commits_them_before_handing_over() -> None:
    topic = unique("rebalance")
    broker = MemoryBroker(partitions=2)
    first = recorder(topic, group_id="handover")
    first.gate = asyncio.Event()
    second = recorder(topic, group_id="handover")
    async with running(app_with(broker=broker, handlers=first)) as one:
        await one.kafka.send(topic, "in-flight", partition=1)
        await first.entered.wait()
        # The newcomer's join revokes partition 1 from the first member, which must finish it first.
        newcomer = running(app_with(broker=broker, handlers=second))
        joining = asyncio.ensure_future(newcomer.__aenter__())
        for _ in range(50):
            await asyncio.sleep(0)
        joined_early = joining.done()
        first.gate.set()
        await joining
        try:
            assert not joined_early, "the rebalance must wait for the in-flight record"
            assert broker.log.group("handover").committed((topic, 1)) == 1, "committed before handing over"
            await one.kafka.send(topic, "after-handover", partition=1)
            await one.wait_for(lambda: len(second.seen) == 1)
        finally:
            await newcomer.__aexit__(None, None, None)
    assert [text for _, _, text in first.seen] == ["in-flight"]
    assert [text for _, _, text in second.seen] == ["after-handover"], "nothing lost, nothing handled twice"


async def test_delayed_send_appears_only_when_due() -> None:
    topic = unique("delayed")
    clock = ManualClock()
    delayed = recorder(topic)
    async with running(app_with(broker=MemoryBroker(clock), handlers=delayed), clock=clock) as app:
        await app.kafka.send(topic, "later", delay=5.0)
        await app.wait_for(lambda: clock.pending == 1)
        await clock.advance(4.999)
        assert delayed.seen == []
        assert app.topic(topic) == []
        await clock.advance(0.001)
        await app.wait_for(lambda: len(delayed.seen) == 1)


async def test_a_pattern_subscription_consumes_the_matching_topics_that_exist_at_start() -> None:
    prefix = unique("pat")
    broker = MemoryBroker(partitions=1)
    for suffix in ("eu", "us", "other"):
        broker.log.create_topic(f"{prefix}.{suffix}" if suffix != "other" else f"{prefix}-other")

    class Matching(Recorder):
        @kafka_listener(pattern=rf"{prefix}\..*", id="matching")
        async def handle(self, text: str, message: Message) -> None:
            await self.record(message.destination, message)

    matching = Matching()
    async with running(app_with(broker=broker, handlers=matching)) as app:
        for topic in (f"{prefix}.eu", f"{prefix}.us", f"{prefix}-other"):
            await app.kafka.send(topic, "x")
        await app.wait_for(lambda: len(matching.seen) == 2)
    assert sorted(text for _, _, text in matching.seen) == [f"{prefix}.eu", f"{prefix}.us"]
