"""Testing helpers for applications: run a container on the embedded broker, publish, await outcomes.

::

    async with running(Container, overrides={"listeners.listener.billing.retry.attempts": 2}) as app:
        await app.kafka.send("orders", order)
        await app.wait_for(lambda: app.stats("billing").processed == 1)

By default the app runs embedded (``memory://`` for Kafka and RabbitMQ) with no config files and the
environment ignored, so tests do not depend on the machine; pass ``embedded=False``, ``config_dir``,
``profiles`` or ``environ`` to change that. Pass a :class:`~listeners.clock.ManualClock` as ``clock``
to drive retries and delayed deliveries by advancing time instead of waiting (:meth:`TestApp.advance`).
"""

from __future__ import annotations

import asyncio
import dataclasses
import tempfile
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from dependency_injector import providers

from listeners.clock import Clock, ManualClock
from listeners.memory import MemoryBroker
from listeners.memory.amqp import AmqpMessage
from listeners.memory.log import LogRecord
from listeners.publishing import KafkaPublisher, RabbitPublisher
from listeners.runtime.stats import ListenerStats
from starter.application import ListenersApplication
from starter.loading import LaunchOptions

_STEP_SLACK = 1e-6
"""Seconds an :meth:`TestApp.advance` step goes past a sleeper's deadline: deadlines read through the
clock's epoch-based ``time()`` are off by up to ~0.2 us, and a step falling short would not wake it."""
_QUIET_TURNS = 3
"""Turns without progress, with nothing else ready to run on the loop, after which the app is settled."""
_BLIND_QUIET_TURNS = 20
"""The same when the loop's ready queue cannot be inspected (e.g. uvloop)."""
_MAX_UNCHANGED_TURNS = 50
"""Turns without progress after which the app counts as settled even if other tasks keep running."""

EMBEDDED = {
    "listeners.kafka.bootstrap_servers": "memory://",
    "listeners.rabbit.url": "memory://",
    "listeners.idempotency.store": "memory",
}
"""Settings of an app under test: the embedded broker, and idempotency keys in memory (no files)."""

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

    async def settle(self, timeout: float = 5.0) -> None:
        """Run the event loop until the app has nothing left to do now.

        Settled means: for a few consecutive loop turns nothing was ready to run and nothing moved
        (messages in flight and listener counters, embedded Kafka appends and commits, embedded queue
        depths, clock sleepers, scheduled deliveries). Work waiting on real I/O or on real time is not
        waited for. Fails if the app keeps moving for ``timeout`` real seconds.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        last = self._progress()
        quiet = unchanged = 0
        while True:
            await asyncio.sleep(0)
            now = self._progress()
            ready = getattr(loop, "_ready", None)  # asyncio's run queue; absent on other loops
            if now != last:
                last, quiet, unchanged = now, 0, 0
            else:
                unchanged += 1
                quiet = quiet + 1 if not ready else 0
                needed = _QUIET_TURNS if ready is not None else _BLIND_QUIET_TURNS
                if quiet >= needed or unchanged >= _MAX_UNCHANGED_TURNS:
                    return
            if loop.time() > deadline:
                raise AssertionError(f"the app did not settle within {timeout}s (it kept making progress)")

    async def advance(self, seconds: float) -> None:
        """Move the app's :class:`~listeners.clock.ManualClock` forward by ``seconds``, without races.

        The app settles first (see :meth:`settle`), so a retry or delayed delivery that is about to
        start waiting on the clock is waiting before time moves. Time then moves to each sleeper's
        deadline in turn (to within a microsecond past it), letting the app settle after each wake-up,
        so work that a wake-up starts and that falls due within ``seconds`` runs too, at its own due
        time; then to the end, and the app settles again. Every retry and scheduled delivery due by
        then has been handed to its listener; handlers waiting on real I/O may still be running::

            async with running(app, clock=ManualClock()) as test_app:
                await test_app.kafka.send("orders", order)  # the handler fails once: retry in 2 s
                await test_app.advance(2.0)  # the retry has run

        The embedded broker must run on the same clock (it does unless a test gives it another one).
        Raises TypeError if the app's clock is not a ManualClock.
        """
        clock = self.clock
        if not isinstance(clock, ManualClock):
            raise TypeError(
                f"TestApp.advance needs the app to run on a ManualClock, but its clock is "
                f"{type(clock).__name__}: pass clock=ManualClock() to running() (or declare one as the "
                f"container's clock provider)"
            )
        if seconds < 0:
            raise ValueError(f"time cannot move backwards (advance({seconds}))")
        await self.settle()
        remaining = seconds
        while remaining > 0:
            deadline = clock.next_deadline()
            if deadline is None:
                break
            wait = deadline - clock.time()
            if wait > remaining + _STEP_SLACK:
                break
            step = min(remaining, max(0.0, wait) + _STEP_SLACK)
            await clock.advance(step)
            remaining -= step
            await self.settle()
        await clock.advance(max(0.0, remaining))
        await self.settle()

    def _progress(self) -> tuple[object, ...]:
        """Everything whose change means the app is still moving."""
        listeners = tuple(
            (each.in_flight, dataclasses.astuple(each.stats)) for each in self.app.listeners.values()
        )
        clock = self.clock
        sleepers = (clock.pending, clock.next_deadline()) if isinstance(clock, ManualClock) else None
        broker = self.broker
        queues = tuple(
            (name, len(queue.messages), sum(len(consumer.unacked) for consumer in queue.consumers))
            for name, queue in broker.amqp.queues.items()
        )
        return listeners, sleepers, broker.scheduled, broker.log.activity, queues

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
