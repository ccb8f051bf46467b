"""Order per partition and per key under concurrency, with every handled record committed."""

from __future__ import annotations

import asyncio
import random
from collections import defaultdict

import pytest

from listeners import Message, kafka_listener
from listeners.testing import running
from tests.contract.configs import unique
from tests.support.apps import app_with
from tests.support.brokers import KafkaBroker
from tests.transports.kafka.helpers import committed

pytestmark = pytest.mark.kafka


@pytest.mark.parametrize("ordering", ["partition", "key"])
async def test_order_holds_per_key_with_two_consumers_and_everything_is_committed(
    kafka: KafkaBroker, ordering: str
) -> None:
    topic = unique(f"order-{ordering}")
    rng = random.Random(3)
    seen: dict[str, list[int]] = defaultdict(list)
    handled: list[tuple[int, int]] = []
    active = 0
    peak = 0

    class Handlers:
        @kafka_listener(topic, id="ordered", concurrency=2, ordering=ordering, max_in_flight=64)
        async def handle(self, number: int, message: Message) -> None:
            nonlocal active, peak
            active += 1
            peak = max(peak, active)
            for _ in range(rng.randint(0, 3)):
                await asyncio.sleep(0)
            active -= 1
            seen[(message.key or b"").decode()].append(number)
            assert message.partition is not None
            assert message.offset is not None
            handled.append((message.partition, message.offset))

    keys = [f"key-{k}" for k in range(12)]
    async with running(app_with(handlers=Handlers()), embedded=False, overrides=kafka.overrides()) as app:
        await app.kafka.send_many(topic, _numbered(keys, 15))
        await app.wait_for(lambda: len(handled) == 180, timeout=30, message="180 records")
        await asyncio.sleep(0)
    assert {key: seen[key] for key in keys} == {key: list(range(15)) for key in keys}
    assert len(set(handled)) == 180, "no record handled twice"
    last = {partition: max(o for p, o in handled if p == partition) + 1 for partition, _ in handled}
    assert await committed(kafka, "ordered", topic) == last
    if ordering == "key":
        assert peak > 1, "different keys ran concurrently"


def _numbered(keys: list[str], count: int) -> list[object]:
    from listeners import Outgoing

    return [Outgoing(number, key=key) for number in range(count) for key in keys]


async def test_commits_follow_the_count_when_the_interval_is_long(kafka: KafkaBroker) -> None:
    topic = unique("counted")
    handled: list[int] = []

    class Counted:
        @kafka_listener(topic, id="counted", group_id=topic)
        async def handle(self, number: int, message: Message) -> None:
            assert message.offset is not None
            handled.append(message.offset)

    overrides = kafka.overrides(
        **{
            "listeners.kafka.provisioning.partitions": 1,
            "listeners.kafka.commit_interval": "1h",
            "listeners.kafka.commit_count": 10,
        }
    )
    async with running(app_with(c=Counted()), embedded=False, overrides=overrides) as app:
        await app.kafka.send_many(topic, list(range(25)))
        await app.wait_for(lambda: len(handled) == 25, timeout=20)
        # With an hour-long interval, only the count can have committed while the app runs.
        positions: dict[int, int | None] = {}
        for _ in range(100):
            positions = await committed(kafka, topic, topic)
            if positions.get(0, 0) and positions[0] >= 20:
                break
            await asyncio.sleep(0.05)
        assert positions[0] is not None
        assert positions[0] >= 20
    assert await committed(kafka, topic, topic) == {0: 25}
