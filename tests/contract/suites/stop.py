"""Graceful stop: in-flight work finishes within the timeout; what cannot is released, not lost."""

from __future__ import annotations

import asyncio

from tests.contract.configs import TransportConfig, unique


class StopSuite(TransportConfig):
    async def test_stop_waits_for_in_flight_handlers_and_settles_them(self) -> None:
        source = unique("drain")
        started, release = asyncio.Event(), asyncio.Event()

        class Handlers:
            def __init__(self) -> None:
                self.finished: list[int] = []

            @self.listener(source, id="drain")
            async def handle(self, number: int) -> None:
                started.set()
                await release.wait()
                self.finished.append(number)

        handlers = Handlers()
        async with self.run(handlers) as app:
            await self.publish(app, source, 1)
            await started.wait()
            stopping = asyncio.ensure_future(app.app.stop())
            await asyncio.sleep(0)
            assert not stopping.done()
            release.set()
            assert await stopping is True
        assert handlers.finished == [1]
        again = Handlers()
        async with self.run(again) as app:
            await self.publish(app, source, 2)
            await app.wait_for(lambda: 2 in again.finished)
        assert again.finished == [2], "a settled message was delivered again"

    async def test_handler_outliving_the_timeout_is_released_and_redelivered(self) -> None:
        source = unique("stuck")
        started = asyncio.Event()

        class Stuck:
            @self.listener(source, id="stuck")
            async def handle(self, number: int) -> None:
                started.set()
                await asyncio.Event().wait()

        async with self.run(Stuck(), overrides={"listeners.shutdown_timeout": "50ms"}) as app:
            await self.publish(app, source, 7)
            await started.wait()
            assert await app.app.stop() is False
            assert app.stats("stuck").released == 1

        class Healthy:
            def __init__(self) -> None:
                self.seen: list[int] = []

            @self.listener(source, id="stuck")
            async def handle(self, number: int) -> None:
                self.seen.append(number)

        healthy = Healthy()
        async with self.run(healthy) as app:
            await app.wait_for(lambda: healthy.seen == [7])
