"""Consuming: decoding, message context, exactly one handling per group, sync handlers, forwarding."""

from __future__ import annotations

import threading
from typing import Annotated

from pydantic import BaseModel

from listeners import Header, Message, send_to
from tests.contract.configs import TransportConfig, unique


class Order(BaseModel):
    order_id: str
    amount: int


class ConsumeSuite(TransportConfig):
    async def test_payload_is_decoded_and_message_context_given(self) -> None:
        source = unique("orders")

        class Handlers:
            received: list[tuple[Order, Message]] = []

            @self.listener(source, id="orders")
            async def on_order(self, order: Order, message: Message) -> None:
                self.received.append((order, message))

        handlers = Handlers()
        async with self.run(handlers) as app:
            await self.publish(
                app, source, Order(order_id="o-1", amount=5), key="k-1", headers={"x-trace": "t"}
            )
            await app.wait_for(lambda: len(handlers.received) == 1)
        order, message = handlers.received[0]
        assert order == Order(order_id="o-1", amount=5)
        assert message.listener_id == "orders"
        assert message.attempt == 1
        assert message.headers["x-trace"] == b"t"
        assert Order.model_validate_json(message.body) == order
        self.check_location(message, source)
        if self.has_keys:
            assert message.key == b"k-1"

    async def test_every_message_is_handled_exactly_once(self) -> None:
        source = unique("events")

        class Handlers:
            seen: list[int] = []

            @self.listener(source, id="events", concurrency=2)
            async def on_event(self, number: int) -> None:
                self.seen.append(number)

        handlers = Handlers()
        async with self.run(handlers) as app:
            for number in range(60):
                await self.publish(app, source, number, key=str(number % 7))
            await app.wait_for(lambda: len(handlers.seen) >= 60, timeout=60)
            await app.wait_for(lambda: app.stats("events").processed == 60)
        assert sorted(handlers.seen) == list(range(60))

    async def test_sync_handler_runs_in_the_handler_pool(self) -> None:
        source = unique("sync")

        class Handlers:
            threads: list[str] = []

            @self.listener(source, id="sync")
            def on_text(self, text: str) -> None:
                self.threads.append(threading.current_thread().name)

        handlers = Handlers()
        async with self.run(handlers) as app:
            await self.publish(app, source, "hello")
            await app.wait_for(lambda: len(handlers.threads) == 1)
        assert handlers.threads[0].startswith("listeners-handler")
        assert handlers.threads[0] != threading.main_thread().name

    async def test_header_parameter_gets_the_header_value(self) -> None:
        source = unique("headers")

        class Handlers:
            values: list[tuple[str, int]] = []

            @self.listener(source, id="headers")
            async def on_message(
                self,
                body: bytes,
                request_id: Annotated[str, Header("x-request-id")],
                priority: Annotated[int, Header("x-priority")] = 0,
            ) -> None:
                self.values.append((request_id, priority))

        handlers = Handlers()
        async with self.run(handlers) as app:
            await self.publish(app, source, b"a", headers={"x-request-id": "r-1", "x-priority": "7"})
            await self.publish(app, source, b"b", headers={"x-request-id": "r-2"})
            await app.wait_for(lambda: len(handlers.values) == 2)
        assert sorted(handlers.values) == [("r-1", 7), ("r-2", 0)]

    async def test_send_to_forwards_the_return_value(self) -> None:
        source, target = unique("in"), unique("out")

        class Handlers:
            forwarded: list[Order] = []

            @self.listener(source, id="doubler")
            @send_to(target)
            async def double(self, order: Order) -> Order:
                return Order(order_id=order.order_id, amount=order.amount * 2)

            @self.listener(target, id="sink")
            async def receive(self, order: Order) -> None:
                self.forwarded.append(order)

        handlers = Handlers()
        async with self.run(handlers) as app:
            await self.publish(app, source, Order(order_id="o-2", amount=21))
            await app.wait_for(lambda: len(handlers.forwarded) == 1)
            await app.wait_for(lambda: app.stats("doubler").processed == 1)
        assert handlers.forwarded == [Order(order_id="o-2", amount=42)]
