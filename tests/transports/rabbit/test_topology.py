"""Topology from declarations: exchange types, bindings, queue types, passive checks with clear errors."""

from __future__ import annotations

from typing import Any

import aio_pika
import pytest

from listeners import Message, StartupError, TransportError, UnroutableError, rabbit_listener
from listeners.testing import running
from tests.contract.configs import unique
from tests.support.apps import app_with

pytestmark = pytest.mark.rabbit


def inbox(queue: str, listener_id: str, **options: Any) -> Any:
    class Inbox:
        received: list[tuple[str, str | None]] = []

        @rabbit_listener(queue, id=listener_id, **options)
        async def handle(self, text: str, message: Message) -> None:
            self.received.append((text, message.routing_key))

    return Inbox()


@pytest.mark.parametrize(
    ("exchange_type", "declared", "published", "delivered"),
    [
        ("topic", {"routing_key": "order.*"}, [("order.created", None), ("refund.created", None)], [0]),
        ("direct", {"routing_key": "paid"}, [("paid", None), ("created", None)], [0]),
        ("fanout", {}, [("anything", None), ("", None)], [0, 1]),
        (
            "headers",
            {"binding_arguments": {"x-match": "all", "kind": "order"}},
            [("", {"kind": "order"}), ("", {"kind": "refund"})],
            [0],
        ),
    ],
)
async def test_a_listener_declares_and_binds_its_queue(
    rabbit: str, exchange_type: str, declared: dict[str, Any], published: list[Any], delivered: list[int]
) -> None:
    queue, exchange = unique("bound"), unique("x")
    box = inbox(queue, "bound", exchange=exchange, exchange_type=exchange_type, **declared)
    async with running(app_with(box=box), embedded=False, overrides={"listeners.rabbit.url": rabbit}) as app:
        for number, (routing_key, headers) in enumerate(published):
            try:
                await app.rabbit.publish(exchange, routing_key, str(number), headers=headers)
            except UnroutableError:
                assert number not in delivered
        await app.wait_for(lambda: len(box.received) == len(delivered), timeout=10)
    assert sorted(int(text) for text, _ in box.received) == delivered


async def test_quorum_queue_with_single_active_consumer_keeps_order_across_consumers(rabbit: str) -> None:
    queue = unique("quorum")

    class Ordered:
        seen: list[int] = []

        @rabbit_listener(queue, id="ordered", queue_type="quorum", single_active_consumer=True, concurrency=2,
                         ordering="partition")  # fmt: skip
        async def handle(self, number: int) -> None:
            self.seen.append(number)

    async with running(
        app_with(o=Ordered()), embedded=False, overrides={"listeners.rabbit.url": rabbit}
    ) as app:
        for number in range(50):
            await app.rabbit.publish("", queue, number)
        await app.wait_for(lambda: len(Ordered.seen) == 50, timeout=15)
    assert Ordered.seen == list(range(50))
    connection = await aio_pika.connect(rabbit)
    try:
        channel = await connection.channel()
        with pytest.raises(aio_pika.exceptions.ChannelPreconditionFailed):
            await channel.declare_queue(queue, durable=True)  # it is a quorum queue, not a classic one
    finally:
        await connection.close()


async def test_declare_false_checks_passively_and_names_what_is_missing(rabbit: str) -> None:
    queue = unique("missing")
    box = inbox(queue, "checked", declare=False)
    with pytest.raises(StartupError, match=rf"queue {queue!r} does not exist \(declare: false only checks"):
        async with running(app_with(box=box), embedded=False, overrides={"listeners.rabbit.url": rabbit}):
            pass

    exchange = unique("missing-x")
    other = inbox(unique("q"), "checked_x", exchange=exchange, declare=False)
    with pytest.raises(StartupError, match=rf"exchange {exchange!r} does not exist"):
        async with running(app_with(box=other), embedded=False, overrides={"listeners.rabbit.url": rabbit}):
            pass


async def test_declare_false_accepts_what_exists(rabbit: str) -> None:
    queue = unique("exists")
    connection = await aio_pika.connect(rabbit)
    try:
        channel = await connection.channel()
        await channel.declare_queue(queue, durable=True)
        await channel.declare_queue(f"{queue}.dlq", durable=True)
    finally:
        await connection.close()
    box = inbox(queue, "existing", declare=False)
    async with running(app_with(box=box), embedded=False, overrides={"listeners.rabbit.url": rabbit}) as app:
        await app.rabbit.publish("", queue, "hello")
        await app.wait_for(lambda: len(box.received) == 1, timeout=10)


async def test_redeclaring_with_other_arguments_is_a_clear_error(rabbit: str) -> None:
    queue = unique("clash")
    connection = await aio_pika.connect(rabbit)
    try:
        await (await connection.channel()).declare_queue(queue, durable=True, arguments={"x-max-length": 5})
    finally:
        await connection.close()
    box = inbox(queue, "clash")
    with pytest.raises(StartupError, match=rf"queue {queue!r} exists with other arguments than declared"):
        async with running(app_with(box=box), embedded=False, overrides={"listeners.rabbit.url": rabbit}):
            pass


async def test_publishing_to_a_missing_exchange_names_it(rabbit: str) -> None:
    async with running(app_with(), embedded=False, overrides={"listeners.rabbit.url": rabbit}) as app:
        exchange = unique("nowhere")
        with pytest.raises(TransportError, match=exchange):
            await app.rabbit.publish(exchange, "k", "x")
        with pytest.raises(UnroutableError, match="no queue is bound"):
            await app.rabbit.publish("", unique("nobody"), "x")
        # The publisher recovers its channel after the broker closed it.
        queue = unique("after")
        box = inbox(queue, "after")
    async with running(app_with(box=box), embedded=False, overrides={"listeners.rabbit.url": rabbit}) as app:
        await app.rabbit.publish("", queue, "ok")
        await app.wait_for(lambda: len(box.received) == 1, timeout=10)


async def test_publish_many_pipelines_confirms_and_reports_an_unroutable_one(rabbit: str) -> None:
    from listeners import Outgoing

    queue = unique("bulk")
    box = inbox(queue, "bulk")
    async with running(app_with(box=box), embedded=False, overrides={"listeners.rabbit.url": rabbit}) as app:
        receipts = await app.rabbit.publish_many("", queue, [f"m{n}" for n in range(50)] + [Outgoing("last")])
        assert len(receipts) == 51
        await app.wait_for(lambda: len(box.received) == 51, timeout=10)
        with pytest.raises(UnroutableError):
            await app.rabbit.publish_many("", unique("nobody"), ["x", "y"])
