"""Non-blocking retries on Kafka through Spring-style retry topics, on the run's broker."""

from __future__ import annotations

import time

import pytest
from aiokafka import AIOKafkaProducer

from listeners import Message, kafka_listener
from listeners.retry.kafka_wire import from_java_bigint, java_bigint
from listeners.testing import running
from tests.contract.configs import unique
from tests.support.apps import app_with
from tests.support.brokers import KafkaBroker
from tests.support.kafka_tools import read_topic
from tests.transports.kafka.helpers import committed, create_topic, partition_count

pytestmark = pytest.mark.kafka


def int32(value: int) -> bytes:
    return value.to_bytes(4, "big", signed=True)


def non_blocking(attempts: int, delay: float, multiplier: float = 1.0) -> dict[str, object]:
    backoff = {"delay": delay, "multiplier": multiplier, "jitter": 0.0}
    return {"attempts": attempts, "mode": "non-blocking", "backoff": backoff}


async def test_a_transient_failure_is_retried_through_the_retry_topic_never_early(kafka: KafkaBroker) -> None:
    topic, group = unique("nb-orders"), unique("group")
    await create_topic(kafka, topic, 2)

    class Flaky:
        attempts: list[tuple[int, float]] = []

        @kafka_listener(topic, id="flaky", group_id=group, retry=non_blocking(3, 0.5))
        async def handle(self, text: str, message: Message) -> None:
            self.attempts.append((message.attempt, time.time()))
            if message.attempt == 1:
                raise ConnectionError("downstream not ready")

    async with running(app_with(h=Flaky()), embedded=False, overrides=kafka.overrides()) as app:
        receipt = await app.kafka.send(topic, "pay", key="order-7", headers={"trace": "t-1"})
        await app.wait_for(lambda: len(Flaky.attempts) == 2, timeout=30)
        assert app.stats("flaky").retried == 1
        assert app.stats("flaky").processed == 1

    (first, failed_at), (second, retried_at) = Flaky.attempts
    assert (first, second) == (1, 2)
    assert retried_at - failed_at >= 0.5, "a retried record must never run before its back-off ran out"
    assert await partition_count(kafka, f"{topic}-retry-500") == 2, "provisioned as wide as the source"
    [retry] = await read_topic(kafka.bootstrap, f"{topic}-retry-500")
    assert (retry.key, retry.value, retry.partition) == (b"order-7", b"pay", receipt.partition)
    headers = dict(retry.headers)
    assert retry.headers[0] == ("trace", b"t-1"), "the original headers come first, byte for byte"
    assert headers["retry_topic-attempts"] == int32(2)
    due = from_java_bigint(headers["retry_topic-backoff-timestamp"])
    assert failed_at * 1000 + 500 - 50 <= due <= retried_at * 1000
    assert headers["kafka_original-topic"] == topic.encode()
    assert headers["kafka_original-offset"] == (receipt.offset or 0).to_bytes(8, "big")
    assert headers["kafka_exception-fqcn"] == b"ConnectionError"
    assert await read_topic(kafka.bootstrap, f"{topic}-dlt") == []


async def test_exhausted_retries_walk_the_tiers_then_dead_letter_to_the_source_dlt(
    kafka: KafkaBroker,
) -> None:
    topic, group = unique("nb-poison"), unique("group")
    await create_topic(kafka, topic, 1)

    class Broken:
        attempts: list[int] = []

        @kafka_listener(topic, id="broken", group_id=group, retry=non_blocking(3, 0.2, multiplier=2.0))
        async def handle(self, text: str, message: Message) -> None:
            self.attempts.append(message.attempt)
            raise TimeoutError(f"attempt {message.attempt} timed out")

    async with running(app_with(h=Broken()), embedded=False, overrides=kafka.overrides()) as app:
        receipt = await app.kafka.send(topic, "never", key="k")
        await app.wait_for(lambda: app.stats("broken").dead_lettered == 1, timeout=30)
        assert Broken.attempts == [1, 2, 3]

    assert len(await read_topic(kafka.bootstrap, f"{topic}-retry-200")) == 1
    assert len(await read_topic(kafka.bootstrap, f"{topic}-retry-400")) == 1
    [dead] = await read_topic(kafka.bootstrap, f"{topic}-dlt")
    headers = dict(dead.headers)
    assert (dead.key, dead.value) == (b"k", b"never")
    assert headers["kafka_dlt-original-topic"] == topic.encode(), "the DLT describes the first failure"
    assert headers["kafka_dlt-original-offset"] == (receipt.offset or 0).to_bytes(8, "big")
    assert headers["kafka_dlt-exception-fqcn"] == b"TimeoutError"
    assert headers["kafka_dlt-exception-message"] == b"attempt 3 timed out"
    assert headers["retry_topic-attempts"] == int32(3)
    assert (await committed(kafka, group, topic))[0] == (receipt.offset or 0) + 1


async def test_a_record_written_by_spring_waits_for_its_due_time_while_other_partitions_flow(
    kafka: KafkaBroker,
) -> None:
    """Headers exactly as Spring Kafka writes them (BigInteger timestamps, int attempts, the
    kafka_dlt-original-* names): the record runs as attempt 3 once due, not before, and a record of the
    source topic is not held up by it."""
    topic, group = unique("nb-spring"), unique("group")
    await create_topic(kafka, topic, 1)
    retry_topic = f"{topic}-retry-1000"
    await create_topic(kafka, retry_topic, 1)

    class Seen:
        handled: list[tuple[str, int, float]] = []

        @kafka_listener(topic, id="interop", group_id=group, retry=non_blocking(4, 1.0))
        async def handle(self, text: str, message: Message) -> None:
            self.handled.append((text, message.attempt, time.time()))

    async with running(app_with(h=Seen()), embedded=False, overrides=kafka.overrides()) as app:
        due_ms = int(time.time() * 1000) + 2500
        producer = AIOKafkaProducer(bootstrap_servers=kafka.bootstrap)
        await producer.start()
        try:
            spring_headers = [
                ("kafka_dlt-original-topic", topic.encode()),
                ("kafka_dlt-original-partition", int32(0)),
                ("kafka_dlt-original-offset", (5).to_bytes(8, "big")),
                ("retry_topic-attempts", int32(3)),
                ("retry_topic-backoff-timestamp", java_bigint(due_ms)),
                ("retry_topic-original-timestamp", java_bigint(due_ms - 10_000)),
            ]
            await producer.send_and_wait(retry_topic, b"from-java", key=b"j", headers=spring_headers)
        finally:
            await producer.stop()
        await app.kafka.send(topic, "fresh")
        await app.wait_for(lambda: [text for text, _, _ in Seen.handled] == ["fresh"], timeout=30)
        await app.wait_for(lambda: len(Seen.handled) == 2, timeout=30)

    fresh, java = Seen.handled
    assert fresh[2] * 1000 < due_ms, "the source topic flowed while the retry record waited"
    assert java[:2] == ("from-java", 3)
    assert java[2] * 1000 >= due_ms, "never before the due time in retry_topic-backoff-timestamp"
