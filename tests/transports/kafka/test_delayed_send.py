"""Delayed sends on Kafka (``send(..., delay=s)``) through ``<topic>-delay``, on the run's broker:
never handled before the due time, a first delivery of the topic in every group, other partitions
flowing, failures on the topic's retry path, the delay topic provisioned as wide as the topic, and a
clear error when it is missing."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

import pytest

from listeners import Message, TransportError, kafka_listener
from listeners.retry.kafka_wire import from_java_bigint
from listeners.testing import running
from tests.contract.configs import unique
from tests.support.apps import app_with
from tests.support.brokers import KafkaBroker
from tests.support.kafka_tools import read_topic
from tests.transports.kafka.helpers import committed, create_topic, partition_count

pytestmark = pytest.mark.kafka

WAIT = 30.0
"""Generous bound for one outcome (group joins on Tansu take about a second each)."""


@dataclass
class Handled:
    """What a listener handled, when (epoch seconds), with an event per expected count."""

    records: list[tuple[str, Message, float]] = field(default_factory=list)
    events: dict[int, asyncio.Event] = field(default_factory=dict)

    def add(self, text: str, message: Message) -> None:
        self.records.append((text, message, time.time()))
        event = self.events.get(len(self.records))
        if event is not None:
            event.set()

    async def reach(self, count: int) -> None:
        event = self.events.setdefault(count, asyncio.Event())
        if len(self.records) >= count:
            event.set()
        try:
            await asyncio.wait_for(event.wait(), WAIT)
        except TimeoutError:
            raise AssertionError(f"{count} expected within {WAIT}s, got {self.records}") from None

    def by_text(self, text: str) -> tuple[Message, float]:
        [(message, at)] = [(message, at) for seen, message, at in self.records if seen == text]
        return message, at


def listener(topic: str, group: str, seen: Handled, **options: object) -> object:
    class Listener:
        @kafka_listener(topic, id=group, group_id=group, **options)
        async def handle(self, text: str, message: Message) -> None:
            seen.add(text, message)
            if text.startswith("fail"):
                raise ConnectionError(f"cannot handle {text}")

    return Listener()


async def test_a_delayed_send_runs_once_due_as_a_first_delivery_of_its_topic_in_every_group(
    kafka: KafkaBroker,
) -> None:
    topic, billing, audit = unique("delayed"), unique("billing"), unique("audit")
    await create_topic(kafka, topic, 2)
    seen, audited = Handled(), Handled()
    app = app_with(b=listener(topic, billing, seen), a=listener(topic, audit, audited))

    async with running(app, embedded=False, overrides=kafka.overrides()) as running_app:
        await running_app.kafka.send(topic, "ready")
        await seen.reach(1)  # both groups have their partitions (the delay topic's too)
        await audited.reach(1)
        sent_at = time.time()
        receipt = await running_app.kafka.send(
            topic, "later", key="k-1", headers={"trace": "t-1", "tenant": b"\x00\x01"}, delay=0.8
        )
        await running_app.kafka.send(topic, "now", key="k-1")
        await seen.reach(3)
        await audited.reach(3)

    for handled in (seen, audited):
        assert sorted(text for text, _, _ in handled.records) == ["later", "now", "ready"], "once per group"
    [written] = await read_topic(kafka.bootstrap, f"{topic}-delay")
    due_ms = from_java_bigint(dict(written.headers)["retry_topic-backoff-timestamp"])
    assert due_ms >= sent_at * 1000 + 800
    assert (receipt.destination, receipt.partition, receipt.offset) == (
        f"{topic}-delay",
        written.partition,
        written.offset,
    )
    for handled in (seen, audited):
        message, handled_at = handled.by_text("later")
        assert handled_at >= sent_at + 0.8, "never handled before its delay ran out"
        assert handled_at * 1000 >= due_ms
        assert (message.destination, message.attempt) == (topic, 1)
        assert message.key == b"k-1"
        assert message.body == b"later"
        assert message.headers.pairs == (("trace", b"t-1"), ("tenant", b"\x00\x01")), "as sent, no due time"
        assert message.partition == written.partition
    assert (await committed(kafka, billing, f"{topic}-delay"))[written.partition] == written.offset + 1


async def test_a_short_delay_is_not_held_up_by_a_longer_one_on_another_partition(kafka: KafkaBroker) -> None:
    topic, group = unique("delayed-flow"), unique("group")
    await create_topic(kafka, topic, 2)
    seen = Handled()

    async with running(
        app_with(h=listener(topic, group, seen)), embedded=False, overrides=kafka.overrides()
    ) as app:
        await app.kafka.send(topic, "ready", partition=0)
        await seen.reach(1)  # the group has its partitions (the delay topic's too): the clock starts now
        sent_at = time.time()
        await app.kafka.send(topic, "long", partition=0, delay=2.5)
        await app.kafka.send(topic, "short", partition=1, delay=0.3)
        await seen.reach(3)

    [_, first, second] = seen.records
    assert (first[0], second[0]) == ("short", "long")
    assert first[2] >= sent_at + 0.3
    assert first[2] < sent_at + 2.5, "the short delay ran while the long one still waited on its partition"
    assert second[2] >= sent_at + 2.5, "the long delay ran no earlier than due"
    assert (first[1].partition, second[1].partition) == (1, 0)


async def test_a_failing_delayed_record_takes_the_topics_retry_and_dead_letter_path(
    kafka: KafkaBroker,
) -> None:
    topic, group = unique("delayed-fail"), unique("group")
    await create_topic(kafka, topic, 1)
    seen = Handled()
    retry = {"attempts": 2, "mode": "non-blocking", "backoff": {"delay": 0.2, "jitter": 0.0}}

    async with running(
        app_with(h=listener(topic, group, seen, retry=retry)), embedded=False, overrides=kafka.overrides()
    ) as app:
        await app.kafka.send(topic, "fail-later", key="k", delay=0.3)
        await seen.reach(2)
        await app.wait_for(lambda: app.stats(group).dead_lettered == 1, timeout=WAIT)

    assert [(message.destination, message.attempt) for _, message, _ in seen.records] == [
        (topic, 1),
        (f"{topic}-retry-200", 2),
    ]
    assert len(await read_topic(kafka.bootstrap, f"{topic}-retry-200")) == 1
    [dead] = await read_topic(kafka.bootstrap, f"{topic}-dlt")
    assert (dead.key, dead.value) == (b"k", b"fail-later")
    assert dict(dead.headers)["kafka_dlt-original-topic"] == topic.encode()


async def test_provisioning_creates_the_delay_topic_as_wide_as_its_topic(kafka: KafkaBroker) -> None:
    listened, published = unique("delayed-wide"), unique("delayed-sent")
    await create_topic(kafka, listened, 3)
    await create_topic(kafka, published, 5)

    async with running(
        app_with(h=listener(listened, unique("group"), Handled())),
        embedded=False,
        overrides=kafka.overrides(),
    ) as app:
        assert await partition_count(kafka, f"{listened}-delay") == 3, "created with the listener's topics"
        receipt = await app.kafka.send(published, "x", partition=4, delay=0.5)

    assert await partition_count(kafka, f"{published}-delay") == 5, "created by the first delayed send"
    assert (receipt.destination, receipt.partition) == (f"{published}-delay", 4)


async def test_a_missing_delay_topic_without_provisioning_is_a_clear_error(kafka: KafkaBroker) -> None:
    topic = unique("delayed-missing")
    await create_topic(kafka, topic, 1)
    overrides = kafka.overrides(**{"listeners.kafka.provisioning.enabled": False})

    async with running(app_with(), embedded=False, overrides=overrides) as app:
        with pytest.raises(TransportError) as raised:
            await app.kafka.send(topic, "x", delay=0.5)
        receipt = await app.kafka.send(topic, "y", delay=0)

    text = str(raised.value)
    assert f"'{topic}'" in text, text
    assert f"'{topic}-delay'" in text, text
    assert "listeners.kafka.provisioning.enabled" in text
    assert receipt.destination == topic, "no delay: sent directly"
    assert await read_topic(kafka.bootstrap, f"{topic}-delay") == []


async def test_a_pattern_listener_consumes_the_delay_topics_of_its_matching_topics(
    kafka: KafkaBroker,
) -> None:
    prefix = unique("delayed-pattern")
    topic = f"{prefix}.eu"
    for name in (topic, f"{topic}-delay"):  # the pattern does not match the delay topic by itself
        await create_topic(kafka, name, 1)
    seen = Handled()

    class Matching:
        @kafka_listener(pattern=rf"{prefix}\.(?:eu|us)", id="matching", group_id=unique("group"))
        async def handle(self, text: str, message: Message) -> None:
            seen.add(text, message)

    async with running(app_with(m=Matching()), embedded=False, overrides=kafka.overrides()) as app:
        await app.kafka.send(topic, "ready")
        await seen.reach(1)
        sent_at = time.time()
        await app.kafka.send(topic, "later", delay=0.5)
        await seen.reach(2)

    message, handled_at = seen.by_text("later")
    assert handled_at >= sent_at + 0.5
    assert (message.destination, message.attempt, message.headers.pairs) == (topic, 1, ())
