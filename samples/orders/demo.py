"""A container resource that publishes generated orders while the app runs (profile ``local``)."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import random
import secrets
from collections.abc import AsyncIterator
from decimal import Decimal

from listeners import KafkaPublisher
from samples.orders.models import OrderLine, OrderPlaced
from samples.orders.settings import DemoSettings

log = logging.getLogger("samples.orders.demo")

CUSTOMERS = ("ada", "grace", "alan", "edsger", "barbara")


def make_order(number: int, rng: random.Random, run: str = "") -> OrderPlaced:
    """Order ``number`` of demo ``run``; every 7th has nothing to bill, which billing rejects to the
    dead-letter topic."""
    customer = CUSTOMERS[number % len(CUSTOMERS)]
    quantity = 0 if number % 7 == 0 else rng.randint(1, 3)
    return OrderPlaced(
        order_id=f"o-{run}{number}",
        customer_id=customer,
        email=f"{customer}@example.com",
        lines=[OrderLine(sku=f"sku-{rng.randint(1, 9)}", quantity=quantity, unit_price=Decimal("9.90"))],
    )


async def publish_orders(publisher: KafkaPublisher, settings: DemoSettings) -> None:
    rng = random.Random(7)
    # Order ids differ between runs: billing is idempotent by order id, and a store that outlives
    # the process (the dev profile's SQLite file) would skip a previous run's numbers as duplicates.
    run = f"{secrets.token_hex(2)}-"
    numbers = itertools.count(1) if settings.count == 0 else range(1, settings.count + 1)
    for number in numbers:
        order = make_order(number, rng, run)
        try:
            receipt = await publisher.send("orders", order, key=order.customer_id)
        except Exception as error:  # a demo keeps going; a real producer would retry or alert
            log.error("could not publish order %s: %s", order.order_id, error)
        else:
            log.info("published order %s to %s[%s]", order.order_id, receipt.destination, receipt.partition)
        await asyncio.sleep(settings.interval)


async def demo_publisher(publisher: KafkaPublisher, settings: DemoSettings) -> AsyncIterator[None]:
    """Resource: runs :func:`publish_orders` in the background when enabled, cancels it at shutdown."""
    task = asyncio.ensure_future(publish_orders(publisher, settings)) if settings.enabled else None
    try:
        yield None
    finally:
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
