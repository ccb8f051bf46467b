"""Non-blocking retries through retry topics on the embedded broker's Kafka face, driven by TestApp.advance.

A non-blocking listener republishes a failed record to ``<topic>-retry-<delayMs>`` (Spring Kafka's
names and headers), consumes it again from there no earlier than its due time, holding only that
partition while it waits, and dead-letters an exhausted record to the source topic's ``<topic>-dlt``.
"""

from __future__ import annotations

import random
from typing import Any

import pytest

from listeners import ManualClock, Message, RetryLater, TransportError, kafka_listener
from listeners.memory import MemoryBroker
from listeners.memory.kafka import MemoryKafkaTransport
from listeners.memory.log import LogRecord
from listeners.testing import running
from listeners.transport.base import Envelope, PublishReceipt
from tests.contract.configs import unique
from tests.support.apps import app_with

NO_JITTER = {"delay": 1.0, "multiplier": 2.0, "jitter": 0.0}


class Flaky(Exception):
    pass


FLAKY = f"{Flaky.__module__}.{Flaky.__qualname__}".encode()


def non_blocking(attempts: int, **backoff: float) -> dict[str, Any]:
    return {"mode": "non-blocking", "attempts": attempts, "backoff": backoff or NO_JITTER}


def header_map(record: LogRecord) -> dict[str, bytes]:
    return dict(record.headers)


def int_of(data: bytes) -> int:
    return int.from_bytes(data, "big", signed=True)


def ms(seconds: float) -> int:
    return round(seconds * 1000)


class Seen:
    """What a handler saw: (text, attempt, topic, partition)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, int, str, int | None]] = []

    def add(self, text: str, message: Message) -> None:
        self.calls.append((text, message.attempt, message.destination, message.partition))

    @property
    def texts(self) -> list[str]:
        return [text for text, _, _, _ in self.calls]


async def test_transient_failure_is_retried_through_the_retry_topic_when_due() -> None:
    topic = unique("orders")
    clock = ManualClock()
    seen = Seen()

    class Handlers:
        @kafka_listener(topic, id="flaky", retry=non_blocking(3))
        async def handle(self, text: str, message: Message) -> None:
            seen.add(text, message)
            if message.attempt == 1:
                raise Flaky("first try fails")

    broker = MemoryBroker(clock, partitions=2)
    async with running(app_with(Handlers(), broker=broker), clock=clock) as app:
        sent_at = clock.time()
        await app.kafka.send(topic, "o-1", key="k-1", partition=1, headers={"x-origin": "test"})
        await app.settle()
        assert seen.calls == [("o-1", 1, topic, 1)]
        [retry] = app.topic(f"{topic}-retry-1000")
        assert (retry.partition, retry.key, retry.value) == (1, b"k-1", b"o-1"), "same partition and record"
        assert broker.log.partitions(f"{topic}-retry-1000") == 2, "retry topics are as wide as the source"
        assert broker.log.partitions(f"{topic}-retry-2000") == 2, "every tier is declared up front"
        assert broker.log.partitions(f"{topic}-dlt") == 2

        await app.advance(0.999)
        assert seen.calls == [("o-1", 1, topic, 1)], "the retry ran before it was due"
        await app.advance(0.001)
        assert seen.calls == [("o-1", 1, topic, 1), ("o-1", 2, f"{topic}-retry-1000", 1)]
        stats = app.stats("flaky")
        assert (stats.processed, stats.retried, stats.failed, stats.dead_lettered) == (1, 1, 1, 0)
        group = broker.log.group("flaky")
        assert group.committed((topic, 1)) == 1, "the source is committed once the retry is published"
        assert group.committed((f"{topic}-retry-1000", 1)) == 1
        assert app.topic(f"{topic}-dlt") == []
    assert clock.time() == pytest.approx(sent_at + 1.0)


async def test_a_retried_record_carries_exactly_the_spring_retry_headers() -> None:
    topic = unique("headers")
    clock = ManualClock()

    class Handlers:
        @kafka_listener(topic, id="headers", retry=non_blocking(3))
        async def handle(self, text: str) -> None:
            raise Flaky("always fails")

    broker = MemoryBroker(clock, partitions=2)
    async with running(app_with(Handlers(), broker=broker), clock=clock) as app:
        sent_ms = ms(clock.time())
        receipt = await app.kafka.send(topic, "h-1", key="k-1", partition=1, headers={"x-origin": "test"})
        await app.settle()
        [first] = app.topic(f"{topic}-retry-1000")
        assert [name for name, _ in first.headers] == [
            "x-origin",
            "kafka_original-topic",
            "kafka_original-partition",
            "kafka_original-offset",
            "kafka_original-timestamp",
            "retry_topic-original-timestamp",
            "kafka_exception-fqcn",
            "kafka_exception-message",
            "retry_topic-attempts",
            "retry_topic-backoff-timestamp",
            "listeners-retry-started",
        ]
        headers = header_map(first)
        assert headers["x-origin"] == b"test", "the original headers are kept"
        assert headers["kafka_original-topic"] == topic.encode()
        assert len(headers["kafka_original-partition"]) == 4
        assert int_of(headers["kafka_original-partition"]) == 1
        assert len(headers["kafka_original-offset"]) == 8
        assert int_of(headers["kafka_original-offset"]) == receipt.offset == 0
        assert int_of(headers["kafka_original-timestamp"]) == sent_ms
        assert int_of(headers["retry_topic-original-timestamp"]) == sent_ms
        assert headers["listeners-retry-started"] == str(sent_ms).encode(), "first failure, for the timeout"
        assert headers["kafka_exception-fqcn"] == FLAKY
        assert headers["kafka_exception-message"] == b"always fails"
        assert len(headers["retry_topic-attempts"]) == 4, "a Java int"
        assert int_of(headers["retry_topic-attempts"]) == 2
        # Java BigInteger bytes: minimal two's complement (epoch ms of 2023 need 6 bytes).
        backoff = headers["retry_topic-backoff-timestamp"]
        assert len(backoff) == 6
        assert int_of(backoff) == sent_ms + 1000, "due one back-off (1 s) after the failure"

        await app.advance(1.0)
        [second] = app.topic(f"{topic}-retry-2000")
        again = header_map(second)
        assert again["kafka_original-topic"] == topic.encode(), "the first retry's origin is kept"
        assert int_of(again["kafka_original-offset"]) == 0
        assert int_of(again["retry_topic-attempts"]) == 3
        assert int_of(again["retry_topic-backoff-timestamp"]) == sent_ms + 1000 + 2000
        names = [name for name, _ in second.headers]
        assert names.count("kafka_original-topic") == 1, "origin headers are not written twice"
        assert names.count("retry_topic-attempts") == 1, "per-retry headers are replaced"


async def test_exhausted_retries_go_through_each_tier_then_to_the_source_topics_dlt() -> None:
    topic = unique("exhaust")
    clock = ManualClock()
    seen = Seen()

    class Handlers:
        @kafka_listener(topic, id="exhaust", retry=non_blocking(3))
        async def handle(self, text: str, message: Message) -> None:
            seen.add(text, message)
            raise Flaky(f"failure {message.attempt}")

    broker = MemoryBroker(clock, partitions=3)
    async with running(app_with(Handlers(), broker=broker), clock=clock) as app:
        await app.kafka.send(topic, "e-1", key="k-e", partition=2, headers={"x-origin": "test"})
        await app.settle()
        await app.advance(1.0)
        assert [attempt for _, attempt, _, _ in seen.calls] == [1, 2]
        await app.advance(1.999)
        assert len(seen.calls) == 2, "the second retry waits its 2 s tier"
        assert app.topic(f"{topic}-dlt") == []
        await app.advance(0.001)
        assert seen.calls == [
            ("e-1", 1, topic, 2),
            ("e-1", 2, f"{topic}-retry-1000", 2),
            ("e-1", 3, f"{topic}-retry-2000", 2),
        ]
        [dead] = app.topic(f"{topic}-dlt")
        assert (dead.partition, dead.key, dead.value) == (2, b"k-e", b"e-1")
        headers = header_map(dead)
        assert headers["x-origin"] == b"test"
        assert headers["kafka_original-topic"] == topic.encode()
        assert headers["kafka_dlt-exception-message"] == b"failure 3"
        assert app.topic(f"{topic}-retry-2000-dlt") == [], "never the retry topic's own DLT"
        stats = app.stats("exhaust")
        assert (stats.failed, stats.retried, stats.dead_lettered, stats.processed) == (3, 2, 1, 0)
        group = broker.log.group("exhaust")
        for source in (topic, f"{topic}-retry-1000", f"{topic}-retry-2000"):
            assert group.committed((source, 2)) == 1, f"{source} is committed"


async def test_a_record_not_yet_due_holds_its_partition_while_others_flow() -> None:
    topic = unique("hold")
    retry_topic = f"{topic}-retry-1000"
    clock = ManualClock()
    seen = Seen()

    class Handlers:
        @kafka_listener(topic, id="hold", retry=non_blocking(3))
        async def handle(self, text: str, message: Message) -> None:
            seen.add(text, message)
            if text == "bad" and message.attempt == 1:
                raise Flaky("not yet")

    broker = MemoryBroker(clock, partitions=2)
    async with running(app_with(Handlers(), broker=broker), clock=clock) as app:
        now_ms = ms(clock.time())
        await app.kafka.send(topic, "bad", partition=0)
        await app.settle()
        # Records already due, as a Spring service would have written them, behind and beside it.
        due_now = (
            ("retry_topic-attempts", (2).to_bytes(4, "big")),
            ("retry_topic-backoff-timestamp", now_ms.to_bytes(6, "big")),
        )
        broker.log.append(retry_topic, b"behind", partition=0, headers=due_now)
        broker.log.append(retry_topic, b"beside", partition=1, headers=due_now)
        await app.kafka.send(topic, "fresh", partition=0)
        await app.settle()
        assert seen.texts == ["bad", "beside", "fresh"] or seen.texts == ["bad", "fresh", "beside"]
        assert "behind" not in seen.texts, "a record behind one that is not due was handed out"

        await app.advance(0.999)
        assert "behind" not in seen.texts
        await app.advance(0.001)
        assert seen.texts[-2:] == ["bad", "behind"], "the partition resumes at the due record, in order"
        assert [(text, attempt) for text, attempt, _, _ in seen.calls[-2:]] == [("bad", 2), ("behind", 2)]
        assert broker.log.group("hold").committed((retry_topic, 0)) == 2


async def test_a_handlers_own_delay_waits_in_full_in_the_shortest_tier() -> None:
    topic = unique("later")
    clock = ManualClock()
    seen = Seen()

    class Handlers:
        @kafka_listener(topic, id="later", retry=non_blocking(2))
        async def handle(self, text: str, message: Message) -> None:
            seen.add(text, message)
            if message.attempt == 1:
                raise RetryLater("not yet", delay=5.0)

    broker = MemoryBroker(clock, partitions=1)
    async with running(app_with(Handlers(), broker=broker), clock=clock) as app:
        sent_ms = ms(clock.time())
        await app.kafka.send(topic, "l-1")
        await app.settle()
        [retry] = app.topic(f"{topic}-retry-1000")
        assert int_of(header_map(retry)["retry_topic-backoff-timestamp"]) == sent_ms + 5000
        await app.advance(1.0)
        assert len(seen.calls) == 1, "ran after its tier's delay instead of the 5 s the handler asked for"
        await app.advance(3.999)
        assert len(seen.calls) == 1
        await app.advance(0.001)
        assert seen.calls[-1] == ("l-1", 2, f"{topic}-retry-1000", 0)


async def test_jitter_never_makes_a_retry_run_before_its_jittered_due_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Every jitter draw at the top of its range: 1 s +/- 50 % becomes 1.4 s (the tier stays 1000).
    monkeypatch.setattr(random.Random, "random", lambda self: 0.9)
    topic = unique("jitter")
    clock = ManualClock()
    seen = Seen()

    class Handlers:
        @kafka_listener(topic, id="jitter", retry=non_blocking(2, delay=1.0, multiplier=1.0, jitter=0.5))
        async def handle(self, text: str, message: Message) -> None:
            seen.add(text, message)
            if message.attempt == 1:
                raise Flaky("jittered")

    broker = MemoryBroker(clock, partitions=1)
    async with running(app_with(Handlers(), broker=broker), clock=clock) as app:
        sent_ms = ms(clock.time())
        await app.kafka.send(topic, "j-1")
        await app.settle()
        [retry] = app.topic(f"{topic}-retry-1000")
        assert int_of(header_map(retry)["retry_topic-backoff-timestamp"]) == sent_ms + 1400
        await app.advance(1.0)
        assert len(seen.calls) == 1, "ran at its tier's delay, before its jittered due time"
        await app.advance(0.399)
        assert len(seen.calls) == 1
        await app.advance(0.001)
        assert seen.calls[-1] == ("j-1", 2, f"{topic}-retry-1000", 0)


async def test_a_pattern_listener_consumes_the_retry_topics_of_the_matching_topics() -> None:
    prefix = unique("pat")
    clock = ManualClock()
    seen = Seen()
    broker = MemoryBroker(clock, partitions=1)
    broker.log.create_topic(f"{prefix}.eu")

    class Handlers:
        @kafka_listener(pattern=rf"{prefix}\..*", id="pattern", retry=non_blocking(2))
        async def handle(self, text: str, message: Message) -> None:
            seen.add(text, message)
            if message.attempt == 1:
                raise Flaky("once")

    async with running(app_with(Handlers(), broker=broker), clock=clock) as app:
        await app.kafka.send(f"{prefix}.eu", "p-1")
        await app.settle()
        await app.advance(1.0)
        assert seen.calls == [("p-1", 1, f"{prefix}.eu", 0), ("p-1", 2, f"{prefix}.eu-retry-1000", 0)]
        assert f"{prefix}.eu-retry-1000-retry-1000" not in broker.log.topics()


async def test_blocking_listeners_ignore_retry_headers_on_their_records() -> None:
    topic = unique("blocking")
    seen = Seen()

    class Handlers:
        @kafka_listener(topic, id="blocking")
        async def handle(self, text: str, message: Message) -> None:
            seen.add(text, message)

    broker = MemoryBroker(ManualClock(), partitions=1)
    async with running(app_with(Handlers(), broker=broker), clock=broker.clock) as app:
        far_future = (ms(broker.clock.time()) + 60_000).to_bytes(6, "big")
        headers = {
            "retry_topic-attempts": (3).to_bytes(4, "big"),
            "retry_topic-backoff-timestamp": far_future,
        }
        await app.kafka.send(topic, "copied", headers=headers)
        await app.settle()
        assert seen.calls == [("copied", 1, topic, 0)]


async def test_a_failed_retry_publish_leaves_the_source_uncommitted_and_is_tried_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    topic = unique("unconfirmed")
    clock = ManualClock()
    seen = Seen()
    failures = [TransportError("broker down")]
    publish = MemoryKafkaTransport.publish

    async def flaky_publish(self: MemoryKafkaTransport, envelope: Envelope) -> PublishReceipt:
        if envelope.destination.startswith(f"{topic}-retry-") and failures:
            raise failures.pop()
        return await publish(self, envelope)

    monkeypatch.setattr(MemoryKafkaTransport, "publish", flaky_publish)

    class Handlers:
        @kafka_listener(topic, id="unconfirmed", retry=non_blocking(2))
        async def handle(self, text: str, message: Message) -> None:
            seen.add(text, message)
            if message.attempt == 1:
                raise Flaky("once")

    broker = MemoryBroker(clock, partitions=1)
    async with running(app_with(Handlers(), broker=broker), clock=clock) as app:
        await app.kafka.send(topic, "u-1")
        await app.settle()
        group = broker.log.group("unconfirmed")
        assert app.topic(f"{topic}-retry-1000") == []
        assert group.committed((topic, 0)) in (None, 0), "committed although the retry was not published"
        assert app.stats("unconfirmed").retried == 0
        await app.advance(0.6)  # the settle back-off (0.5 s +/- 10 %): the publish is tried again
        assert len(app.topic(f"{topic}-retry-1000")) == 1
        assert group.committed((topic, 0)) == 1
        await app.advance(1.0)
        assert [(text, attempt) for text, attempt, _, _ in seen.calls] == [("u-1", 1), ("u-1", 2)]
