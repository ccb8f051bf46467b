"""MemoryBroker: the embedded broker shared by the memory Kafka and RabbitMQ transports."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from listeners.clock import Clock, SystemClock
from listeners.memory.amqp import MemoryAmqp
from listeners.memory.log import MemoryLog


class MemoryBroker:
    """A Kafka-like log and a RabbitMQ-like router in one process, on one clock.

    Delayed deliveries wait on the clock, so with a :class:`~listeners.clock.ManualClock` they arrive
    exactly when a test advances time past their due time.
    """

    def __init__(self, clock: Clock | None = None, *, partitions: int = 3) -> None:
        self.clock = clock or SystemClock()
        self.log = MemoryLog(self.clock, partitions)
        self.amqp = MemoryAmqp()
        self._scheduled: set[asyncio.Task[None]] = set()

    def schedule(self, delay: float, action: Callable[[], object]) -> None:
        """Run ``action`` once ``delay`` seconds have passed on the broker's clock."""

        async def later() -> None:
            await self.clock.sleep(delay)
            action()

        task = asyncio.ensure_future(later())
        self._scheduled.add(task)
        task.add_done_callback(self._scheduled.discard)

    @property
    def scheduled(self) -> int:
        """Deliveries waiting for their due time."""
        return len(self._scheduled)

    async def close(self) -> None:
        """Drop deliveries that are still waiting (the embedded broker keeps nothing across runs)."""
        tasks = list(self._scheduled)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
