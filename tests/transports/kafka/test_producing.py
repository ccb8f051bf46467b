"""The Kafka publisher and topic provisioning against the broker."""

from __future__ import annotations

import pytest

from listeners import Message, MessageTooLargeError, Outgoing, kafka_listener
from listeners.testing import running
from tests.contract.configs import unique
from tests.support.apps import app_with
from tests.support.brokers import KafkaBroker
from tests.support.kafka_tools import read_topic
from tests.transports.kafka.helpers import create_topic, partition_count

pytestmark = pytest.mark.kafka


async def test_send_returns_the_confirmed_position_and_keeps_key_and_headers(kafka: KafkaBroker) -> None:
    topic = unique("sent")
    async with running(app_with(), embedded=False, overrides=kafka.overrides()) as app:
        receipt = await app.kafka.send(topic, {"id": 1}, key="k-1", headers={"x-trace": "t1"})
        receipts = await app.kafka.send_many(topic, [Outgoing({"id": n}, key="k-1") for n in range(2, 6)])
    assert receipt.destination == topic
    assert [r.offset for r in [receipt, *receipts]] == list(
        range(receipt.offset or 0, (receipt.offset or 0) + 5)
    )
    assert {r.partition for r in receipts} == {receipt.partition}, "one key, one partition"
    records = await read_topic(kafka.bootstrap, topic)
    assert [record.value for record in records] == [b'{"id":%d}' % n for n in range(1, 6)]
    assert records[0].key == b"k-1"
    assert dict(records[0].headers) == {"x-trace": b"t1"}


async def test_a_message_over_the_size_limit_is_a_fatal_publish_error(kafka: KafkaBroker) -> None:
    async with running(app_with(), embedded=False, overrides=kafka.overrides()) as app:
        with pytest.raises(MessageTooLargeError, match="send to"):
            await app.kafka.send(unique("big"), b"x" * 2_000_000)
    assert MessageTooLargeError.retryable is False


async def test_provisioning_creates_listener_and_dead_letter_topics_as_wide_as_the_source(
    kafka: KafkaBroker,
) -> None:
    created, existing = unique("created"), unique("existing")
    await create_topic(kafka, existing, 5)

    class Declared:
        @kafka_listener(created, id="created")
        async def on_created(self, value: str) -> None: ...

        @kafka_listener(existing, id="existing")
        async def on_existing(self, value: str) -> None: ...

    overrides = kafka.overrides(**{"listeners.kafka.provisioning.partitions": 4})
    async with running(app_with(d=Declared()), embedded=False, overrides=overrides):
        pass
    assert await partition_count(kafka, created) == 4
    assert await partition_count(kafka, f"{created}-dlt") == 4
    assert await partition_count(kafka, existing) == 5, "existing topics are left as they are"
    assert await partition_count(kafka, f"{existing}-dlt") == 5


async def test_a_pattern_subscription_consumes_every_matching_topic(kafka: KafkaBroker) -> None:
    prefix = unique("pat")
    for suffix in ("eu", "us"):
        await create_topic(kafka, f"{prefix}.{suffix}", 1)
    await create_topic(kafka, f"{prefix}-other", 1)

    class Matching:
        seen: list[tuple[str, str]] = []

        @kafka_listener(pattern=rf"{prefix}\..*", id="matching")
        async def handle(self, value: str, message: Message) -> None:
            self.seen.append((message.destination, value))

    async with running(app_with(m=Matching()), embedded=False, overrides=kafka.overrides()) as app:
        for topic in (f"{prefix}.eu", f"{prefix}.us", f"{prefix}-other"):
            await app.kafka.send(topic, topic)
        await app.wait_for(lambda: len(Matching.seen) == 2, timeout=20)
    assert sorted(Matching.seen) == [(f"{prefix}.eu", f"{prefix}.eu"), (f"{prefix}.us", f"{prefix}.us")]
