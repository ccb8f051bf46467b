"""Metrics and readiness on real brokers: Kafka partition lag, RabbitMQ queue depth, readiness during
a forced RabbitMQ reconnect."""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import urlsplit

import pytest
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from listeners import kafka_listener, rabbit_listener
from listeners.testing import running
from tests.contract.configs import unique
from tests.observability.helpers import (
    close_connections_named,
    eventually,
    eventually_async,
    http_get,
    metered,
    points,
    ready,
    value,
)
from tests.observability.proxy import DoorProxy
from tests.support.apps import app_with
from tests.support.brokers import KafkaBroker


@pytest.mark.kafka
async def test_kafka_process_duration_consumed_count_and_partition_lag(kafka: KafkaBroker) -> None:
    topic = unique("obs-orders")
    gate = asyncio.Event()

    class Handlers:
        @kafka_listener(topic, id="billing", group_id=unique("obs-billing"))
        async def bill(self, order: dict[str, Any]) -> None:
            await gate.wait()

    reader = InMemoryMetricReader()
    overrides = kafka.overrides(**{"listeners.kafka.commit_interval": "100ms"})
    async with running(metered(Handlers(), reader=reader), embedded=False, overrides=overrides) as app:
        group = app.app.listener("billing").endpoint.group_id
        receipts = [await app.kafka.send(topic, {"id": n}, key="one-key") for n in range(5)]
        [partition] = {receipt.partition for receipt in receipts}
        lag = {
            "messaging__destination__name": topic,
            "messaging__destination__partition__id": str(partition),
        }
        await app.wait_for(lambda: app.app.listener("billing").in_flight == 5, timeout=30)
        await eventually(lambda: value(reader, "listeners.consumer.lag", **lag) == 5, "a lag of 5")
        assert value(reader, "listeners.consumer.time_lag", listeners__listener__id="billing") > 0
        gate.set()
        await app.wait_for(lambda: app.stats("billing").processed == 5, timeout=30)
        await eventually(lambda: value(reader, "listeners.consumer.lag", **lag) == 0, "the lag back to 0")
        await app.kafka.send(topic, {"id": 5}, key="one-key")
        await eventually(lambda: app.stats("billing").processed == 6, "the sixth message")
        await eventually(lambda: value(reader, "listeners.consumer.lag", **lag) == 0, "the lag at 0 again")

    [duration] = points(reader, "messaging.process.duration")
    assert duration.count == 6
    assert dict(duration.attributes) == {
        "messaging.system": "kafka",
        "messaging.destination.name": topic,
        "messaging.consumer.group.name": group,
        "messaging.operation.name": "process",
        "messaging.operation.type": "process",
        "listeners.listener.id": "billing",
    }
    assert value(reader, "messaging.client.consumed.messages", listeners__listener__id="billing") == 6
    assert value(reader, "messaging.client.sent.messages", messaging__destination__name=topic) == 6


@pytest.mark.rabbit
async def test_rabbitmq_queue_depth_is_polled_and_moves(rabbit: str) -> None:
    queue = unique("obs-depth")
    gate = asyncio.Event()

    class Handlers:
        @rabbit_listener(queue, id="slow", prefetch=1)
        async def handle(self, text: str) -> None:
            await gate.wait()

    reader = InMemoryMetricReader()
    overrides = {"listeners.rabbit.url": rabbit, "listeners.metrics.lag_interval": "50ms"}
    async with running(metered(Handlers(), reader=reader), embedded=False, overrides=overrides) as app:
        depth = {"messaging__destination__name": queue}
        await eventually(lambda: value(reader, "listeners.consumer.lag", **depth) == 0, "an empty queue")
        for n in range(5):
            await app.rabbit.publish("", queue, f"m{n}")
        await eventually(lambda: value(reader, "listeners.consumer.lag", **depth) == 4, "4 waiting, 1 held")
        gate.set()
        await app.wait_for(lambda: app.stats("slow").processed == 5, timeout=20)
        await eventually(lambda: value(reader, "listeners.consumer.lag", **depth) == 0, "the queue drained")
    [duration] = points(reader, "messaging.process.duration")
    assert duration.count == 5
    assert duration.attributes["messaging.system"] == "rabbitmq"
    assert duration.attributes["messaging.destination.name"] == queue


@pytest.mark.rabbit
async def test_readiness_is_503_during_a_forced_reconnect_and_200_once_consuming_again(rabbit: str) -> None:
    queue, name = unique("obs-ready"), unique("obs-connection")
    seen: list[str] = []

    class Handlers:
        @rabbit_listener(queue, id="worker")
        async def handle(self, text: str) -> None:
            seen.append(text)

    parts = urlsplit(rabbit)
    # Through a proxy whose door the test shuts: the broker closes the connection and reconnecting
    # fails until the door opens again, so the not-ready window lasts as long as the test needs.
    async with DoorProxy(parts.hostname or "127.0.0.1", parts.port or 5672) as proxy:
        overrides = {
            "listeners.rabbit.url": f"amqp://{parts.username}:{parts.password}@127.0.0.1:{proxy.port}/",
            "listeners.rabbit.connection_name": name,
            "listeners.rabbit.reconnect.initial": "50ms",
            "listeners.rabbit.reconnect.maximum": "200ms",
            "listeners.server.port": 0,
            "listeners.server.host": "127.0.0.1",
        }
        async with running(app_with(Handlers()), embedded=False, overrides=overrides) as app:
            port = app.app.server_port
            assert port
            assert await ready(port) == (200, {"status": "UP"})
            proxy.refusing = True
            assert await asyncio.to_thread(close_connections_named, name, "test: forced reconnect") == 1
            not_ready = (503, {"status": "DOWN", "not_consuming": {"worker": "not consuming"}})
            await eventually_async(lambda: _readiness_is(port, not_ready), "readiness 503 while reconnecting")
            await eventually(lambda: proxy.refused >= 2, "reconnect attempts refused")
            assert await ready(port) == not_ready, "still not ready while it cannot reconnect"
            assert (await http_get(port, "/health/live"))[0] == 200, "alive all along"
            proxy.refusing = False
            await eventually_async(lambda: _readiness_is(port, (200, {"status": "UP"})), "ready again")
            await app.rabbit.publish("", queue, "after")
            await app.wait_for(lambda: seen == ["after"], timeout=20)


async def _readiness_is(port: int, expected: tuple[int, dict[str, Any]]) -> bool:
    return await ready(port) == expected


@pytest.mark.kafka
async def test_kafka_readiness_waits_for_the_consumer_to_join_its_group(kafka: KafkaBroker) -> None:
    topic = unique("obs-join")

    class Handlers:
        @kafka_listener(topic, id="joiner", group_id=unique("obs-joiner"))
        async def handle(self, order: dict[str, Any]) -> None: ...

    overrides = kafka.overrides(**{"listeners.server.port": 0, "listeners.server.host": "127.0.0.1"})
    async with running(app_with(Handlers()), embedded=False, overrides=overrides) as app:
        port = app.app.server_port
        assert port
        subscription = app.app.listener("joiner").subscription
        assert subscription is not None
        seen: list[tuple[int, dict[str, Any]]] = []

        async def joined() -> bool:
            consuming = subscription.consuming
            answer = await ready(port)
            seen.append(answer)
            return consuming and answer[0] == 200

        await eventually_async(joined, "readiness once the consumer joined", timeout=30)
        not_ready = (503, {"status": "DOWN", "not_consuming": {"joiner": "not consuming"}})
        assert all(answer in (not_ready, (200, {"status": "UP"})) for answer in seen)
        statuses = [status for status, _ in seen]
        assert statuses == sorted(statuses, reverse=True), "503 (joining) only before 200 (consuming)"
