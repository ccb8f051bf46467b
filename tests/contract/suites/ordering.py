"""Ordering lanes: order kept where promised, concurrency where allowed, the in-flight bound respected."""

from __future__ import annotations

import asyncio
from collections import defaultdict

from listeners import Message
from tests.contract.configs import TransportConfig, unique


class OrderingSuite(TransportConfig):
    async def test_one_lane_keeps_publish_order_even_when_handlers_yield(self) -> None:
        source = unique("lane")

        class Handlers:
            seen: list[int] = []

            @self.listener(source, id="lane", ordering="partition", max_in_flight=50)
            async def handle(self, number: int) -> None:
                for _ in range(number % 3):
                    await asyncio.sleep(0)
                self.seen.append(number)

        handlers = Handlers()
        async with self.run(handlers) as app:
            for number in range(40):
                await self.publish(app, source, number, key="one-key")
            await app.wait_for(lambda: len(handlers.seen) == 40)
        assert handlers.seen == list(range(40))

    async def test_key_ordering_keeps_per_key_order_and_runs_keys_concurrently(self) -> None:
        if not self.has_keys:
            return
        source = unique("keys")
        both_running = asyncio.Event()
        inside: set[str] = set()

        class Handlers:
            seen: dict[str, list[int]] = defaultdict(list)

            @self.listener(source, id="keys", ordering="key", max_in_flight=64)
            async def handle(self, number: int, message: Message) -> None:
                key = (message.key or b"").decode()
                inside.add(key)
                if len(inside) >= 2:
                    both_running.set()
                if number == 0:
                    # Only finishes if another key's handler runs meanwhile: proves keys run in parallel.
                    await asyncio.wait_for(both_running.wait(), 5)
                self.seen[key].append(number)
                inside.discard(key)

        handlers = Handlers()
        keys = ["a", "b", "c", "d"]
        async with self.run(handlers, overrides=self.single_partition()) as app:
            for number in range(25):
                for key in keys:
                    await self.publish(app, source, number, key=key)
            await app.wait_for(lambda: sum(len(v) for v in handlers.seen.values()) == 100)
        assert {key: handlers.seen[key] for key in keys} == {key: list(range(25)) for key in keys}

    async def test_in_flight_bound_is_never_exceeded(self) -> None:
        source = unique("bound")
        release = asyncio.Event()
        running_now = 0
        peak = 0

        class Handlers:
            done = 0

            @self.listener(source, id="bound", ordering="none", max_in_flight=3)
            async def handle(self, number: int) -> None:
                nonlocal running_now, peak
                running_now += 1
                peak = max(peak, running_now)
                await release.wait()
                running_now -= 1
                type(self).done += 1

        async with self.run(Handlers()) as app:
            for number in range(10):
                await self.publish(app, source, number)
            await app.wait_for(lambda: running_now == 3)
            assert app.app.listener("bound").in_flight == 3
            release.set()
            await app.wait_for(lambda: Handlers.done == 10)
        assert peak == 3
