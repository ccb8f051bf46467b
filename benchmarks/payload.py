"""The payload every case handles: a small pydantic model sent as JSON (about 140 bytes)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from pydantic import BaseModel

KEYS = 1000
"""Distinct record keys; the default partitioner spreads them over the topic's partitions."""

_EPOCH = datetime(2026, 1, 1, tzinfo=UTC)


class OrderPlaced(BaseModel):
    order_id: str
    customer: str
    amount_cents: int
    currency: str
    placed_at: datetime
    express: bool


def order(index: int) -> OrderPlaced:
    """Event ``index``: the model the publish cases send and the consume cases validate."""
    return OrderPlaced(
        order_id=f"order-{index:08d}",
        customer=f"customer-{index % KEYS:04d}",
        amount_cents=100 + index % 10_000,
        currency="EUR",
        placed_at=_EPOCH + timedelta(seconds=index),
        express=index % 7 == 0,
    )


def payload(index: int) -> tuple[bytes, bytes]:
    """Key and JSON value of record ``index``."""
    event = order(index)
    return event.customer.encode(), event.model_dump_json().encode()
