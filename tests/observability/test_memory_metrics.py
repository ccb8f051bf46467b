"""Metrics on the embedded broker: process duration, consumed and sent counts, listener counters,
in-flight work, consumer lag and time lag."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from listeners import Retry, kafka_listener, rabbit_listener
from listeners.testing import running
from tests.contract.configs import unique
from tests.observability.helpers import metered, points, value
from tests.support.apps import app_with

QUICK_RETRY = Retry.model_validate(
    {"attempts": 3, "backoff": {"delay": 0.01, "multiplier": 1.0, "jitter": 0}}
)


@pytest.fixture
def reader() -> InMemoryMetricReader:
    return InMemoryMetricReader()


async def test_a_handled_message_records_its_process_duration_and_counts_as_consumed_and_sent(
    reader: InMemoryMetricReader,
) -> None:
    topic = unique("m-orders")

    class Handlers:
        @kafka_listener(topic, id="billing", group_id="billing-group")
        async def bill(self, order: dict[str, Any]) -> None: ...

    async with running(metered(Handlers(), reader=reader)) as app:
        for n in range(3):
            await app.kafka.send(topic, {"id": n})
        await app.wait_for(lambda: app.stats("billing").processed == 3)

    [duration] = points(reader, "messaging.process.duration")
    assert duration.count == 3
    assert duration.sum > 0
    assert dict(duration.attributes) == {
        "messaging.system": "kafka",
        "messaging.destination.name": topic,
        "messaging.consumer.group.name": "billing-group",
        "messaging.operation.name": "process",
        "messaging.operation.type": "process",
        "listeners.listener.id": "billing",
    }
    assert value(reader, "messaging.client.consumed.messages", listeners__listener__id="billing") == 3
    assert (
        value(
            reader,
            "messaging.client.sent.messages",
            messaging__destination__name=topic,
            messaging__system="kafka",
            messaging__operation__name="send",
        )
        == 3
    )


async def test_failed_attempts_carry_error_type_and_retries_and_dead_letters_are_counted(
    reader: InMemoryMetricReader,
) -> None:
    queue = unique("m-flaky")

    class Handlers:
        @rabbit_listener(queue, id="flaky", retry=QUICK_RETRY)
        async def handle(self, text: str) -> None:
            raise ValueError(text)

    async with running(metered(Handlers(), reader=reader)) as app:
        await app.rabbit.publish("", queue, "boom")
        await app.wait_for(lambda: app.stats("flaky").dead_lettered == 1)
        assert value(reader, "listeners.listener.retries", listeners__listener__id="flaky") == 2
        assert value(reader, "listeners.listener.dead_letters", listeners__listener__id="flaky") == 1
        assert value(reader, "listeners.listener.failed", listeners__listener__id="flaky") == 3
        assert value(reader, "listeners.listener.processed", listeners__listener__id="flaky") == 0

    [point] = [p for p in points(reader, "messaging.process.duration") if p.attributes.get("error.type")]
    assert point.attributes["error.type"] == "ValueError"
    assert point.count == 3, "every attempt is a process operation"
    assert point.attributes["messaging.system"] == "rabbitmq"
    assert point.attributes["messaging.destination.name"] == queue
    assert "messaging.consumer.group.name" not in point.attributes
    # blocking retries run the same delivery again: consumed once
    assert value(reader, "messaging.client.consumed.messages", listeners__listener__id="flaky") == 1


async def test_kafka_partition_lag_in_flight_and_time_lag_move_as_messages_arrive_and_finish(
    reader: InMemoryMetricReader,
) -> None:
    topic = unique("m-lag")
    gate = asyncio.Event()

    class Handlers:
        @kafka_listener(topic, id="slow")
        async def handle(self, order: dict[str, Any]) -> None:
            await gate.wait()

    async with running(metered(Handlers(), reader=reader)) as app:
        lag = [
            p
            for p in points(reader, "listeners.consumer.lag")
            if p.attributes["listeners.listener.id"] == "slow"
        ]
        assert lag, "a point per partition"
        assert all(point.value == 0 for point in lag), "nothing waiting yet"
        for n in range(5):
            await app.kafka.send(topic, {"id": n}, key="one-key")
        await app.wait_for(lambda: app.app.listener("slow").in_flight == 5)
        [partition] = {r.partition for r in app.topic(topic)}
        attributes = {
            "messaging.destination.name": topic,
            "messaging.destination.partition.id": str(partition),
        }
        assert value(reader, "listeners.consumer.lag", **_dunder(attributes)) == 5
        assert value(reader, "listeners.listener.in_flight", listeners__listener__id="slow") == 5
        assert value(reader, "listeners.consumer.time_lag", listeners__listener__id="slow") >= 0
        gate.set()
        await app.wait_for(lambda: app.stats("slow").processed == 5)
        assert value(reader, "listeners.consumer.lag", **_dunder(attributes)) == 0
        assert value(reader, "listeners.listener.in_flight", listeners__listener__id="slow") == 0
        assert value(reader, "listeners.consumer.time_lag", listeners__listener__id="slow") == 0


async def test_rabbitmq_queue_depth_moves_as_messages_arrive_and_are_taken(
    reader: InMemoryMetricReader,
) -> None:
    queue = unique("m-depth")
    gate = asyncio.Event()

    class Handlers:
        @rabbit_listener(queue, id="slow", prefetch=1)
        async def handle(self, text: str) -> None:
            await gate.wait()

    async with running(metered(Handlers(), reader=reader)) as app:
        assert value(reader, "listeners.consumer.lag", messaging__destination__name=queue) == 0
        for n in range(5):
            await app.rabbit.publish("", queue, f"m{n}")
        await app.wait_for(lambda: app.app.listener("slow").in_flight == 1)
        assert value(reader, "listeners.consumer.lag", messaging__destination__name=queue) == 4
        gate.set()
        await app.wait_for(lambda: app.stats("slow").processed == 5)
        assert value(reader, "listeners.consumer.lag", messaging__destination__name=queue) == 0


async def test_metrics_off_adds_no_pipeline_step_and_no_provider() -> None:
    topic = unique("m-off")

    class Handlers:
        @kafka_listener(topic, id="plain")
        async def handle(self, order: dict[str, Any]) -> None: ...

    container = app_with(Handlers())
    async with running(container) as app:
        assert container.meter_provider() is None
        assert container.message_metrics() is None
        await app.kafka.send(topic, {"id": 1})
        await app.wait_for(lambda: app.stats("plain").processed == 1)


def _dunder(attributes: dict[str, str]) -> dict[str, str]:
    return {key.replace(".", "__"): text for key, text in attributes.items()}
