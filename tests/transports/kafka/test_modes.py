"""At-most-once commits before handling; long handlers at the bound keep the consumer in its group."""

from __future__ import annotations

import asyncio

import pytest

from listeners import Message, kafka_listener
from listeners.testing import running
from tests.contract.configs import unique
from tests.support.apps import app_with
from tests.support.brokers import KafkaBroker
from tests.transports.kafka.helpers import committed, create_topic

pytestmark = pytest.mark.kafka


async def test_at_most_once_commits_before_the_handler_and_never_redelivers(kafka: KafkaBroker) -> None:
    topic, group = unique("amo"), unique("group")
    await create_topic(kafka, topic, 1)
    gate = asyncio.Event()

    class Fragile:
        seen: list[str] = []

        @kafka_listener(topic, id="fragile", group_id=group, ack_mode="at_most_once")
        async def handle(self, text: str) -> None:
            self.seen.append(text)
            await gate.wait()
            raise RuntimeError("lost on purpose")

    async with running(app_with(h=Fragile()), embedded=False, overrides=kafka.overrides()) as app:
        await app.kafka.send(topic, "only-once")
        await app.wait_for(lambda: Fragile.seen == ["only-once"], timeout=20)
        assert await committed(kafka, group, topic) == {0: 1}, "committed while the handler still runs"
        gate.set()
        await app.wait_for(lambda: app.stats("fragile").discarded == 1)
        assert app.stats("fragile").dead_lettered == 0

    class Later:
        seen: list[str] = []

        @kafka_listener(topic, id="fragile", group_id=group, ack_mode="at_most_once")
        async def handle(self, text: str) -> None:
            self.seen.append(text)

    async with running(app_with(h=Later()), embedded=False, overrides=kafka.overrides()) as app:
        await app.kafka.send(topic, "next")
        await app.wait_for(lambda: Later.seen == ["next"], timeout=20)


async def test_handlers_longer_than_max_poll_interval_at_the_bound_cause_no_rebalance(
    kafka: KafkaBroker,
) -> None:
    """aiokafka#848: the fetch loop keeps polling (partitions paused) while handlers run, so the member
    is not thrown out of its group; in-flight work never exceeds the bound."""
    topic, group = unique("slow"), unique("group")
    await create_topic(kafka, topic, 2)
    release = asyncio.Event()
    inside = 0
    peak = 0

    class Slow:
        handled: list[tuple[int, int]] = []

        @kafka_listener(topic, id="slow", group_id=group, ordering="none", max_in_flight=3)
        async def handle(self, number: int, message: Message) -> None:
            nonlocal inside, peak
            inside += 1
            peak = max(peak, inside)
            await release.wait()
            inside -= 1
            assert message.partition is not None
            assert message.offset is not None
            self.handled.append((message.partition, message.offset))

    consumer = {**kafka.consumer, "max_poll_interval_ms": 1500}
    overrides = kafka.overrides(**{"listeners.kafka.consumer": consumer})
    async with running(app_with(h=Slow()), embedded=False, overrides=overrides) as app:
        await app.kafka.send_many(topic, list(range(30)))
        await app.wait_for(lambda: inside == 3, timeout=20)
        [worker] = app.app.listener("slow")._subscription._workers  # type: ignore[union-attr]
        await app.wait_for(lambda: bool(worker._paused_by_us), message="partitions paused at the bound")
        await asyncio.sleep(3.5)  # well past max_poll_interval_ms with every handler still blocked
        assert worker._assigned, "still a member: the consumer kept polling"
        release.set()
        await app.wait_for(lambda: len(Slow.handled) == 30, timeout=20)
        stats = app.stats("slow")
    assert peak == 3
    assert len(set(Slow.handled)) == 30, "no record handled twice (no rebalance, no redelivery)"
    assert stats.released == 0
