"""Rebalances between two consumers of one group: in-flight records finish and commit before handover."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import Counter

import pytest
from aiokafka import AIOKafkaProducer

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


async def test_a_member_whose_process_stalled_past_its_session_rejoins_before_handing_out_more(
    kafka: KafkaBroker, caplog: pytest.LogCaptureFixture
) -> None:
    """A handler blocks the event loop longer than the session timeout (as a stopped or swapped-out
    process would): the group drops the member meanwhile. Records produced during the stall (fetched
    on the old assignment as the process resumes) are handed out only after it rejoined; nothing is
    lost."""
    caplog.set_level(logging.INFO, logger="listeners.kafka")
    topic, group = unique("stall"), unique("group")
    await create_topic(kafka, topic, 1)
    session = kafka.consumer.get("session_timeout_ms", 10_000) / 1000
    later = [f"later-{n}" for n in range(5)]
    handled: dict[str, int] = {}  # text -> assignments logged when it was handled

    def produce_later() -> None:
        async def send() -> None:
            producer = AIOKafkaProducer(bootstrap_servers=kafka.bootstrap)
            await producer.start()
            try:
                for text in later:
                    await producer.send_and_wait(topic, text.encode())
            finally:
                await producer.stop()

        asyncio.run(send())

    class Stalling:
        @kafka_listener(topic, id="staller", group_id=group)
        async def handle(self, text: str) -> None:
            handled[text] = caplog.text.count("assigned")
            if text == "stall":
                producing = threading.Thread(target=produce_later)
                producing.start()
                time.sleep(session + 1.0)  # noqa: ASYNC251 - the stall under test
                producing.join()

    async with running(app_with(s=Stalling()), embedded=False, overrides=kafka.overrides()) as app:
        await app.kafka.send(topic, "stall")
        await app.wait_for(lambda: set(later) <= set(handled), timeout=30)
        await app.wait_for(lambda: app.app.listener("staller").subscription.consuming, timeout=10)
    assert "did not run for" in caplog.text
    assert "handing out nothing until it has rejoined" in caplog.text
    stalled_at = handled["stall"]
    assert all(handled[text] > stalled_at for text in later), f"handed out before rejoining: {handled}"
    assert await committed(kafka, group, topic) == {0: 1 + len(later)}
