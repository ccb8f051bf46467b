"""Delayed publishing on RabbitMQ (``publish(..., delay=s)``) through the ``listeners.delay`` headers
exchange and one TTL queue per (exchange, delay) that dead-letters to the target exchange: never
delivered early, routing key and headers kept, on a topic exchange and on the default exchange, one
queue per distinct delay, and a clear error for a missing exchange."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

import aio_pika
import pytest

from listeners import Message, TransportError, rabbit_listener
from listeners.testing import running
from tests.contract.configs import unique
from tests.support.apps import app_with
from tests.transports.rabbit.helpers import queue_state

pytestmark = pytest.mark.rabbit

WAIT = 10.0


@dataclass
class Received:
    """Messages a listener got, with their receive time (monotonic seconds); an event per count."""

    messages: list[tuple[str, Message, float]] = field(default_factory=list)
    events: dict[int, asyncio.Event] = field(default_factory=dict)

    def add(self, text: str, message: Message) -> None:
        self.messages.append((text, message, time.monotonic()))
        event = self.events.get(len(self.messages))
        if event is not None:
            event.set()

    async def reach(self, count: int) -> None:
        event = self.events.setdefault(count, asyncio.Event())
        if len(self.messages) >= count:
            event.set()
        try:
            await asyncio.wait_for(event.wait(), WAIT)
        except TimeoutError:
            raise AssertionError(f"{count} expected within {WAIT}s, got {self.messages}") from None

    def by_text(self, text: str) -> tuple[Message, float]:
        [(message, at)] = [(message, at) for seen, message, at in self.messages if seen == text]
        return message, at


def listener(queue: str, received: Received, **options: Any) -> object:
    class Listener:
        @rabbit_listener(queue, id=queue, **options)
        async def handle(self, text: str, message: Message) -> None:
            received.add(text, message)

    return Listener()


def delay_queue_arguments(exchange: str, ms: int) -> dict[str, Any]:
    return {"x-message-ttl": ms, "x-dead-letter-exchange": exchange}


async def test_delayed_messages_reach_a_topic_exchange_no_earlier_than_their_delays(
    rabbit: str, cleanup: list[str]
) -> None:
    queue, exchange = unique("delayed"), unique("x")
    cleanup.extend([f"listeners.delay.{exchange}.400", f"listeners.delay.{exchange}.800"])
    received = Received()
    app = app_with(h=listener(queue, received, exchange=exchange, routing_key="order.*"))

    async with running(app, embedded=False, overrides={"listeners.rabbit.url": rabbit}) as running_app:
        sent_at = time.monotonic()
        await running_app.rabbit.publish(
            exchange, "order.later", "later", headers={"trace": "t-1"}, delay=0.8
        )
        await running_app.rabbit.publish(exchange, "order.soon", "soon", headers={"trace": "t-2"}, delay=0.4)
        await running_app.rabbit.publish(exchange, "order.now", "now")
        await received.reach(3)

    assert received.messages[0][0] == "now"
    for text, delay, trace in (("soon", 0.4, b"t-2"), ("later", 0.8, b"t-1")):
        message, received_at = received.by_text(text)
        assert received_at - sent_at >= delay, f"{text!r} delivered before its delay ran out"
        assert (message.exchange, message.routing_key) == (exchange, f"order.{text}")
        assert message.headers.get("trace") == trace
        assert message.attempt == 1
    assert await queue_state(rabbit, queue) == (0, 0)
    connection = await aio_pika.connect(rabbit)
    try:
        for ms in (400, 800):  # two delays, two queues; same arguments accepted, others refused
            name = f"listeners.delay.{exchange}.{ms}"
            channel = await connection.channel()
            declared = await channel.declare_queue(
                name, durable=True, arguments=delay_queue_arguments(exchange, ms)
            )
            assert declared.declaration_result.message_count == 0
            with pytest.raises(aio_pika.exceptions.ChannelPreconditionFailed):
                await channel.declare_queue(
                    name, durable=True, arguments=delay_queue_arguments(exchange, ms + 1)
                )
    finally:
        await connection.close()


async def test_a_delayed_message_to_the_default_exchange_reaches_the_queue_named_by_its_key(
    rabbit: str, cleanup: list[str]
) -> None:
    queue = unique("delayed-direct")
    cleanup.append("listeners.delay.amq.default.300")
    received = Received()

    async with running(
        app_with(h=listener(queue, received)), embedded=False, overrides={"listeners.rabbit.url": rabbit}
    ) as app:
        sent_at = time.monotonic()
        await app.rabbit.publish("", queue, {"id": 7}, headers={"trace": "t-3"}, delay=0.3)
        await received.reach(1)

    [(text, message, received_at)] = received.messages
    assert received_at - sent_at >= 0.3
    assert text == '{"id":7}'
    assert (message.exchange, message.routing_key) == ("", queue)
    assert message.headers.get("trace") == b"t-3"


async def test_a_delayed_publish_to_a_missing_exchange_is_a_clear_error(rabbit: str) -> None:
    missing = unique("nowhere")
    async with running(app_with(), embedded=False, overrides={"listeners.rabbit.url": rabbit}) as app:
        with pytest.raises(TransportError, match=f"exchange '{missing}' does not exist"):
            await app.rabbit.publish(missing, "key", "x", delay=0.5)
    connection = await aio_pika.connect(rabbit)
    try:
        channel = await connection.channel()
        with pytest.raises(aio_pika.exceptions.ChannelNotFoundEntity):
            await channel.declare_queue(f"listeners.delay.{missing}.500", passive=True)
    finally:
        await connection.close()
