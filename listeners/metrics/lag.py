"""Consumer lag as subscriptions report it, and the background task that refreshes what needs I/O.

A subscription that knows its lag implements :class:`ReportsLag`: Kafka reads it from the consumer's
high watermarks and its committed offsets, the embedded broker from its log and queues, without I/O.
RabbitMQ needs a passive queue declare to read a queue's depth, which an OpenTelemetry observable
callback (synchronous) cannot make; such a subscription also implements :class:`RefreshesLag`, and
:class:`LagPoller` refreshes its cached value every ``interval`` seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable
from typing import Protocol, runtime_checkable

log = logging.getLogger("listeners.metrics")

LagEntry = tuple[str, int | None, int]
"""``(destination, partition or None, messages)``: one topic partition's or one queue's lag."""


@runtime_checkable
class ReportsLag(Protocol):
    """A subscription that reports its consumer lag (cheaply, without I/O)."""

    def consumer_lag(self) -> Iterable[LagEntry]:
        """Messages not yet consumed, per topic partition (Kafka) or queue (RabbitMQ); only what is
        known now (a partition whose high watermark was not fetched yet is left out)."""
        ...


@runtime_checkable
class RefreshesLag(Protocol):
    """A subscription whose lag needs a broker round trip, cached by :meth:`refresh_consumer_lag`."""

    async def refresh_consumer_lag(self) -> None:
        """Read the lag from the broker into the value :meth:`ReportsLag.consumer_lag` returns."""
        ...


class LagPoller:
    """Refreshes the lag of every subscription that needs it, every ``interval`` seconds, until closed.

    ``subscriptions`` is called at each round (listeners come and go); a refresh that fails or takes
    longer than ``interval`` is logged at DEBUG and tried again next round.
    """

    def __init__(self, subscriptions: Callable[[], Iterable[object]], interval: float) -> None:
        self._subscriptions = subscriptions
        self._interval = max(0.05, interval)
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.ensure_future(self._run())

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def refresh(self) -> None:
        """One round: refresh every subscription that needs it, concurrently."""
        refreshing = [s for s in self._subscriptions() if isinstance(s, RefreshesLag)]
        if refreshing:
            await asyncio.gather(*(self._refresh(subscription) for subscription in refreshing))

    async def _refresh(self, subscription: RefreshesLag) -> None:
        try:
            await asyncio.wait_for(subscription.refresh_consumer_lag(), self._interval)
        except asyncio.CancelledError:
            raise
        except Exception as error:
            log.debug("reading consumer lag failed: %s: %s", type(error).__name__, error)

    async def _run(self) -> None:
        while True:
            await self.refresh()
            await asyncio.sleep(self._interval)
