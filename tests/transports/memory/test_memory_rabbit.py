"""The embedded broker's RabbitMQ face: bindings from declarations, competing consumers, prefetch, delays."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from listeners import ManualClock, Message, UnroutableError, rabbit_listener
from listeners.memory import MemoryBroker
from listeners.testing import running
from tests.contract.configs import unique
from tests.support.apps import app_with


class Inbox:
    def __init__(self) -> None:
        self.received: list[tuple[str, str | None]] = []
        self.gate: asyncio.Event | None = None
        self.inside = 0
        self.peak = 0

    async def take(self, text: str, message: Message) -> None:
        self.inside += 1
        self.peak = max(self.peak, self.inside)
        if self.gate is not None:
            await self.gate.wait()
        self.inside -= 1
        self.received.append((text, message.routing_key))


def inbox(queue: str, listener_id: str, **options: Any) -> Inbox:
    class Declared(Inbox):
        @rabbit_listener(queue, id=listener_id, **options)
        async def handle(self, text: str, message: Message) -> None:
            await self.take(text, message)

    return Declared()


@pytest.mark.parametrize(
    ("exchange_type", "routing_key", "published", "delivered"),
    [
        ("topic", "order.*", ["order.created", "order.paid", "refund.created", "order.x.y"], [0, 1]),
        ("topic", "order.#", ["order", "order.paid.late", "orders.paid"], [0, 1]),
        ("direct", None, ["QUEUE", "other"], [0]),
        ("fanout", None, ["anything", ""], [0, 1]),
    ],
)
async def test_a_listener_declares_its_queue_and_binding(
    exchange_type: str, routing_key: str | None, published: list[str], delivered: list[int]
) -> None:
    queue, exchange = unique("q"), unique("x")
    keys = [key.replace("QUEUE", queue) for key in published]
    declared = {"routing_key": routing_key} if routing_key else {}
    box = inbox(queue, "bound", exchange=exchange, exchange_type=exchange_type, **declared)
    async with running(app_with(broker=MemoryBroker(), box=box)) as app:
        for number, key in enumerate(keys):
            try:
                await app.rabbit.publish(exchange, key, str(number))
            except UnroutableError:
                assert number not in delivered
        await app.wait_for(lambda: len(box.received) == len(delivered))
    assert sorted(int(text) for text, _ in box.received) == delivered
    assert {key for _, key in box.received} == {keys[n] for n in delivered}


async def test_unroutable_publish_is_an_error_not_a_silent_drop() -> None:
    async with running(app_with(broker=MemoryBroker())) as app:
        with pytest.raises(UnroutableError, match="reached no queue"):
            await app.rabbit.publish("", unique("nobody-listens"), "lost?")


async def test_competing_consumers_in_two_apps_share_a_queue_without_duplicates() -> None:
    queue = unique("shared")
    broker = MemoryBroker()
    one, two = inbox(queue, "worker", prefetch=1), inbox(queue, "worker", prefetch=1)
    one.gate, two.gate = asyncio.Event(), asyncio.Event()
    async with running(app_with(broker=broker, box=one)) as first, running(app_with(broker=broker, box=two)):
        for number in range(20):
            await first.rabbit.publish("", queue, str(number))
        await first.wait_for(lambda: one.inside == 1 and two.inside == 1)
        one.gate.set()
        two.gate.set()
        await first.wait_for(lambda: len(one.received) + len(two.received) == 20)
    assert one.received, "both consumers got work"
    assert two.received, "both consumers got work"
    assert sorted(int(text) for text, _ in one.received + two.received) == list(range(20))


async def test_prefetch_bounds_unacknowledged_messages_per_consumer() -> None:
    queue = unique("prefetch")
    box = inbox(queue, "bounded", prefetch=3, ordering="none", max_in_flight=100)
    box.gate = asyncio.Event()
    broker = MemoryBroker()
    async with running(app_with(broker=broker, box=box)) as app:
        for number in range(10):
            await app.rabbit.publish("", queue, str(number))
        await app.wait_for(lambda: box.inside == 3)
        [consumer] = broker.amqp.queues[queue].consumers
        assert len(consumer.unacked) == 3
        assert len(app.queue(queue)) == 7
        box.gate.set()
        await app.wait_for(lambda: len(box.received) == 10)
    assert box.peak == 3


async def test_delayed_publish_is_delivered_when_due() -> None:
    queue = unique("later")
    clock = ManualClock()
    box = inbox(queue, "later")
    async with running(app_with(broker=MemoryBroker(clock), box=box), clock=clock) as app:
        await app.rabbit.publish("", queue, "soon", delay=2.0)
        await app.wait_for(lambda: clock.pending == 1)
        await clock.advance(1.999)
        assert box.received == []
        await clock.advance(0.001)
        await app.wait_for(lambda: box.received == [("soon", queue)])


async def test_a_delayed_publish_that_cannot_be_routed_fails_at_once() -> None:
    async with running(app_with(broker=MemoryBroker())) as app:
        with pytest.raises(UnroutableError):
            await app.rabbit.publish("", unique("nobody"), "x", delay=1.0)


async def test_declare_false_checks_that_the_queue_exists() -> None:
    from listeners import StartupError

    queue = unique("undeclared")
    box = inbox(queue, "checked", declare=False)
    with pytest.raises(StartupError, match=rf"queue {queue!r} does not exist"):
        async with running(app_with(broker=MemoryBroker(), box=box)):
            pass
    broker = MemoryBroker()
    broker.amqp.declare_queue(queue)
    async with running(app_with(broker=broker, box=box)) as app:
        await app.rabbit.publish("", queue, "there")
        await app.wait_for(lambda: len(box.received) == 1)


async def test_single_active_consumer_gives_every_message_to_one_consumer() -> None:
    queue = unique("sac")
    box = inbox(queue, "sac", single_active_consumer=True, concurrency=3, ordering="none", prefetch=5)
    box.gate = asyncio.Event()
    broker = MemoryBroker()
    async with running(app_with(broker=broker, box=box)) as app:
        for number in range(10):
            await app.rabbit.publish("", queue, str(number))
        await app.wait_for(lambda: box.inside == 5)
        unacked = sorted(len(consumer.unacked) for consumer in broker.amqp.queues[queue].consumers)
        assert unacked == [0, 0, 5], "only the active consumer receives, up to its prefetch"
        box.gate.set()
        await app.wait_for(lambda: len(box.received) == 10)
