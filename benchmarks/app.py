"""The application both consume benchmarks run: a counting listener object provided by the container."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from dependency_injector import providers

from benchmarks.meter import Meter
from benchmarks.payload import OrderPlaced
from starter import ListenersContainer


def counting_container(declare: Callable[[Any], Any], meter: Meter) -> ListenersContainer:
    """What an application would declare; ``declare`` is the listener decorator (``kafka_listener(...)``)."""

    class OrderCounter:
        def __init__(self, meter: Meter) -> None:
            self._meter = meter

        @declare
        async def on_order(self, order: OrderPlaced) -> None:
            self._meter.tick()

    class BenchContainer(ListenersContainer):
        # Through an Object provider: plain provider arguments are deep-copied with the container.
        bench_meter = providers.Object(meter)
        order_counter = providers.Singleton(OrderCounter, meter=bench_meter)

    return BenchContainer()
