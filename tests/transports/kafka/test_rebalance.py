"""Rebalances between two consumers of one group: in-flight records finish and commit before handover."""

from __future__ import annotations

import asyncio
import logging
from collections import Counter

import pytest

from listeners import Message, kafka_listener
from listeners.testing import running
from tests.contract.configs import unique
from tests.support.apps import app_with
from tests.support.brokers import KafkaBroker
from tests.transports.kafka.helpers import committed, create_topic

pytestmark = pytest.mark.kafka


class Worker:
    def __init__(self) -> None:
        self.handled: list[tuple[int, int, str]] = []
        self.gate: asyncio.Event | None = None
        self.started: list[str] = []

    async def take(self, text: str, message: Message) -> None:
        self.started.append(text)
        if self.gate is not None:
            await self.gate.wait()
        assert message.partition is not None
        assert message.offset is not None
        self.handled.append((message.partition, message.offset, text))


def worker(topic: str, group: str) -> Worker:
    class Declared(Worker):
        @kafka_listener(topic, id="member", group_id=group)
        async def handle(self, text: str, message: Message) -> None:
            await self.take(text, message)

    return Declared()


async def test_a_second_member_takes_over_partitions_without_loss_or_duplicates(kafka: KafkaBroker) -> None:
    topic, group = unique("handover"), unique("group")
    await create_topic(kafka, topic, 4)
    first, second = worker(topic, group), worker(topic, group)
    async with running(app_with(w=first), embedded=False, overrides=kafka.overrides()) as one:
        await one.kafka.send_many(topic, [f"a{n}" for n in range(40)])
        await one.wait_for(lambda: len(first.handled) == 40, timeout=20)
        async with running(app_with(w=second), embedded=False, overrides=kafka.overrides()):
            await one.wait_for(lambda: bool(one.app.listener("member")._subscription), timeout=5)
            for n in range(120):
                await one.kafka.send(topic, f"b{n}", key=str(n))
            await one.wait_for(lambda: len(first.handled) + len(second.handled) == 160, timeout=30)
            stats = one.stats("member")
    texts = Counter(text for _, _, text in first.handled + second.handled)
    assert set(texts) == {f"a{n}" for n in range(40)} | {f"b{n}" for n in range(120)}
    assert max(texts.values()) == 1, f"handled twice: {[t for t, c in texts.items() if c > 1]}"
    assert stats.released == 0
    positions = {}
    for partition, offset, _ in first.handled + second.handled:
        positions[partition] = max(positions.get(partition, 0), offset + 1)
    assert await committed(kafka, group, topic) == positions


async def test_revoke_waits_for_in_flight_records_and_commits_them(
    kafka: KafkaBroker, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="listeners.kafka")
    topic, group = unique("revoke"), unique("group")
    await create_topic(kafka, topic, 2)
    first, second = worker(topic, group), worker(topic, group)
    first.gate = asyncio.Event()
    async with running(app_with(w=first), embedded=False, overrides=kafka.overrides()) as one:
        # Hold a record of each partition in flight, so whichever moves has work to finish first.
        await one.kafka.send(topic, "held-0", partition=0)
        await one.kafka.send(topic, "held-1", partition=1)
        await one.wait_for(lambda: len(first.started) == 2, timeout=20)
        async with running(app_with(w=second), embedded=False, overrides=kafka.overrides()):
            await one.wait_for(
                lambda: "revoked; finishing their in-flight records" in caplog.text, timeout=20
            )
            # The rebalance now waits for the first member: the newcomer must not get the held records.
            await asyncio.sleep(0.5)
            assert second.started == []
            first.gate.set()
            await one.kafka.send(topic, "after-0", partition=0)
            await one.kafka.send(topic, "after-1", partition=1)
            await one.wait_for(lambda: len(first.handled) + len(second.handled) == 4, timeout=20)
    texts = sorted(text for _, _, text in first.handled + second.handled)
    assert texts == ["after-0", "after-1", "held-0", "held-1"], "nothing lost, nothing handled twice"
    assert second.handled, "the newcomer got a partition"
    assert await committed(kafka, group, topic) == {0: 2, 1: 2}
