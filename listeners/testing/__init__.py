"""Testing helpers for applications: run a container on the embedded broker, publish, await outcomes.

::

    async with running(Container, overrides={"listeners.listener.billing.retry.attempts": 2}) as app:
        await app.kafka.send("orders", order)
        await app.wait_for(lambda: app.stats("billing").processed == 1)

By default the app runs embedded (``memory://`` for Kafka and RabbitMQ) with no config files and the
environment ignored, so tests do not depend on the machine; pass ``embedded=False``, ``config_dir``,
``profiles`` or ``environ`` to change that. Pass a :class:`~listeners.clock.ManualClock` as ``clock``
to drive retries and delayed deliveries by advancing time instead of waiting.
"""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from dependency_injector import providers

from listeners.clock import Clock
from listeners.memory import MemoryBroker
from listeners.memory.amqp import AmqpMessage
from listeners.memory.log import LogRecord
from listeners.publishing import KafkaPublisher, RabbitPublisher
from listeners.runtime.stats import ListenerStats
from starter.application import ListenersApplication
from starter.loading import LaunchOptions

EMBEDDED = {"listeners.kafka.bootstrap_servers": "memory://", "listeners.rabbit.url": "memory://"}

__all__ = ["TestApp", "running"]


class TestApp:
    """A running application under test."""

    __test__ = False  # not a pytest test class

    def __init__(self, app: ListenersApplication) -> None:
        self.app = app
        self.container = app.container

    @property
    def kafka(self) -> KafkaPublisher:
        return self.container.kafka_publisher()  # type: ignore[no-any-return]

    @property
    def rabbit(self) -> RabbitPublisher:
        return self.container.rabbit_publisher()  # type: ignore[no-any-return]

    @property
    def broker(self) -> MemoryBroker:
        """The embedded broker (meaningful when the app runs embedded)."""
        return self.container.memory_broker()  # type: ignore[no-any-return]

    @property
    def clock(self) -> Clock:
        return self.container.clock()  # type: ignore[no-any-return]

    def stats(self, listener_id: str) -> ListenerStats:
        """Counters of one listener."""
        return self.app.listener(listener_id).stats

    def topic(self, name: str) -> list[LogRecord]:
        """Every record of an embedded Kafka topic, e.g. a dead-letter topic ``orders-dlt``."""
        return self.broker.log.records(name)

    def queue(self, name: str) -> list[AmqpMessage]:
        """Messages waiting in an embedded RabbitMQ queue, e.g. a dead-letter queue ``work.dlq``."""
        queue = self.broker.amqp.queues.get(name)
        return list(queue.messages) if queue is not None else []

    async def wait_for(
        self, condition: Callable[[], bool], timeout: float = 5.0, message: str = "condition"
    ) -> None:
        """Return once ``condition()`` is true; fail with ``message`` after ``timeout`` real seconds."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not condition():
            if loop.time() > deadline:
                raise AssertionError(f"timed out after {timeout}s waiting for {message}")
            await asyncio.sleep(0.002)


@asynccontextmanager
async def running(
    container: Any,
    *,
    overrides: Mapping[str, Any] | None = None,
    profiles: tuple[str, ...] = (),
    config_dir: str | Path | None = None,
    environ: Mapping[str, str] | None = None,
    embedded: bool = True,
    clock: Clock | None = None,
) -> AsyncIterator[TestApp]:
    """Start ``container`` (an instance or a ListenersContainer subclass), yield it, stop it."""
    if isinstance(container, type):
        container = container()
    settings = {**(EMBEDDED if embedded else {}), **(overrides or {})}
    with tempfile.TemporaryDirectory(prefix="listeners-test-") as empty_dir:
        launch = LaunchOptions(
            config_dir=config_dir if config_dir is not None else empty_dir,
            profiles=profiles,
            overrides=settings,
            environ=environ if environ is not None else {},
        )
        container.launch.override(providers.Object(launch))
        if clock is not None:
            container.clock.override(providers.Object(clock))
        app = ListenersApplication(container)
        await app.start()
        try:
            yield TestApp(app)
        finally:
            await app.stop()
