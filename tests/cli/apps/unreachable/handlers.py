"""A Kafka listener, so the app needs the (unreachable) Kafka transport."""

from __future__ import annotations

from listeners import kafka_listener


@kafka_listener("orders", id="orders")
async def on_order(order: str) -> None:
    """Never called: the app cannot start."""
