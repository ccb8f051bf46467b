"""An application whose one listener method hands every order and its message to a given coroutine.

For the suites that look at what a handler saw and when (key ordering, retry lateness): the listener
is declared by ``declare`` (``kafka_listener(...)`` or ``rabbit_listener(...)``) on a method of a
container-provided object, as an application would write it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from dependency_injector import providers

from benchmarks.payload import OrderPlaced
from listeners import Message
from starter import ListenersContainer

Handle = Callable[[OrderPlaced, Message], Awaitable[None]]


def handler_container(declare: Callable[[Any], Any], handle: Handle) -> ListenersContainer:
    """A container whose listener (declared by ``declare``) awaits ``handle(order, message)``."""

    class OrderHandler:
        def __init__(self, handle: Handle) -> None:
            self._handle = handle

        @declare
        async def on_order(self, order: OrderPlaced, message: Message) -> None:
            await self._handle(order, message)

    class BenchContainer(ListenersContainer):
        # Through an Object provider: plain provider arguments are deep-copied with the container.
        bench_handle = providers.Object(handle)
        order_handler = providers.Singleton(OrderHandler, handle=bench_handle)

    return BenchContainer()
