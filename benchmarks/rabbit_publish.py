"""One measured RabbitMQ confirmed-publish case, run in its own process; prints one JSON line.

``python -m benchmarks.rabbit_publish --case CASE --messages N --queue Q [--url U] [--chunk C]``

- ``listeners``: ``app.rabbit.publish("", queue, order)`` awaited one by one (each returns once the
  broker confirmed it; listeners publishes persistent and mandatory).
- ``listeners-pipelined``: the same calls, ``--chunk`` at a time under ``asyncio.gather`` (the
  transport pipelines them on its one confirm channel).
- ``listeners-bulk``: ``app.rabbit.publish_many("", queue, orders)``, ``--chunk`` orders per call
  (pipelined the same way, one transport look-up per call).
- ``raw``: aio-pika on a ``publisher_confirms=True`` channel, ``default_exchange.publish(Message(body,
  delivery_mode=PERSISTENT), routing_key=queue)`` awaited one by one.
- ``raw-pipelined``: the same, ``--chunk`` at a time under ``asyncio.gather`` (for reference).

Every case starts from the same pydantic models, built before the run; listeners encodes them with
its codec, raw with ``model_dump_json().encode()``. The first message is published on its own and
opens the window (it also opens the channel); the window closes at the N-th confirm.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Literal

import aio_pika

from benchmarks.meter import Meter
from benchmarks.payload import OrderPlaced, order
from listeners.testing import running
from starter import ListenersContainer
from tests.support.rabbit_tools import rabbit_url

Publish = Callable[[OrderPlaced], Awaitable[Any]]
PublishMany = Callable[[Sequence[OrderPlaced]], Awaitable[Any]]
Mode = Literal["one by one", "gathered", "bulk"]


async def publish_all(
    publish: Publish,
    publish_many: PublishMany | None,
    orders: Sequence[OrderPlaced],
    mode: Mode,
    chunk: int,
    meter: Meter,
) -> None:
    """The first order alone (it opens the window), then the rest one by one or ``chunk`` at a time."""
    await publish(orders[0])
    meter.tick()
    rest = orders[1:]
    if mode == "one by one":
        for item in rest:
            await publish(item)
            meter.tick()
        return
    for start in range(0, len(rest), chunk):
        batch = rest[start : start + chunk]
        if mode == "bulk" and publish_many is not None:
            await publish_many(batch)
        else:
            await asyncio.gather(*(publish(item) for item in batch))
        for _ in batch:
            meter.tick()


def how(mode: Mode, chunk: int) -> str:
    """The ``awaited`` setting a case reports."""
    if mode == "one by one":
        return "awaited one by one"
    if mode == "gathered":
        return f"{chunk} gathered at a time"
    return f"{chunk} per publish_many call"


async def run_listeners(
    args: argparse.Namespace, orders: Sequence[OrderPlaced], mode: Mode, meter: Meter
) -> dict[str, Any]:
    async with running(
        ListenersContainer(), embedded=False, overrides={"listeners.rabbit.url": args.url}
    ) as app:
        publisher = app.rabbit

        async def publish(item: OrderPlaced) -> Any:
            return await publisher.publish("", args.queue, item)

        async def publish_many(items: Sequence[OrderPlaced]) -> Any:
            return await publisher.publish_many("", args.queue, items)

        await asyncio.wait_for(
            publish_all(publish, publish_many, orders, mode, args.chunk, meter), args.timeout
        )
        return {
            "api": "app.rabbit.publish_many('', queue, models)"
            if mode == "bulk"
            else "app.rabbit.publish('', queue, model)",
            "awaited": how(mode, args.chunk),
            "confirms": "on; persistent, mandatory",
            "publish_timeout_s": app.app.settings.listeners.rabbit.publish_timeout,
        }


async def run_raw(
    args: argparse.Namespace, orders: Sequence[OrderPlaced], mode: Mode, meter: Meter
) -> dict[str, Any]:
    connection = await aio_pika.connect(args.url)
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        exchange = channel.default_exchange

        async def publish(item: OrderPlaced) -> Any:
            message = aio_pika.Message(
                item.model_dump_json().encode(), delivery_mode=aio_pika.DeliveryMode.PERSISTENT
            )
            return await exchange.publish(message, routing_key=args.queue)

        await asyncio.wait_for(publish_all(publish, None, orders, mode, args.chunk, meter), args.timeout)
    return {
        "api": "channel.default_exchange.publish(Message(body, delivery_mode=PERSISTENT), routing_key=queue)",
        "awaited": how(mode, args.chunk),
        "confirms": "on (publisher_confirms=True); persistent",
    }


Runner = Callable[[argparse.Namespace, Sequence[OrderPlaced], Mode, Meter], Awaitable[dict[str, Any]]]

CASES: dict[str, tuple[Runner, Mode]] = {
    "listeners": (run_listeners, "one by one"),
    "listeners-pipelined": (run_listeners, "gathered"),
    "listeners-bulk": (run_listeners, "bulk"),
    "raw": (run_raw, "one by one"),
    "raw-pipelined": (run_raw, "gathered"),
}


async def measure_case(cases: dict[str, tuple[Runner, Mode]], args: argparse.Namespace) -> dict[str, Any]:
    """Run ``args.case`` of ``cases`` (shared by the publish and produce benchmarks) on fresh models."""
    orders = [order(index) for index in range(args.messages)]
    meter = Meter(args.messages)
    runner, mode = cases[args.case]
    config = await runner(args, orders, mode, meter)
    return {**meter.result(args.case, config).to_json(), "handled": meter.count}


async def measure(args: argparse.Namespace) -> dict[str, Any]:
    return await measure_case(CASES, args)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.rabbit_publish", description=__doc__)
    parser.add_argument("--case", choices=list(CASES), required=True)
    parser.add_argument("--messages", type=int, default=10_000, help="messages to publish (default 10000)")
    parser.add_argument("--url", default=rabbit_url(), help="default: $LISTENERS_TEST_RABBIT_URL, else local")
    parser.add_argument("--queue", required=True, help="an existing queue (published to by name)")
    parser.add_argument("--chunk", type=int, default=1_000, help="publishes gathered at once (default 1000)")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds publishing may take")
    return parser.parse_args(argv)


def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    print(json.dumps(asyncio.run(measure(parse_args()))), flush=True)


if __name__ == "__main__":
    main()
