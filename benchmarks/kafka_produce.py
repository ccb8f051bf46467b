"""One measured Kafka confirmed-produce case, run in its own process; prints one JSON line.

``python -m benchmarks.kafka_produce --case CASE --messages N --bootstrap X --topic T``

- ``listeners``: ``app.kafka.send(topic, order, key=order.customer)`` awaited one by one (each returns
  once the broker confirmed the record).
- ``listeners-bulk``: ``app.kafka.send_many(topic, [Outgoing(order, key=order.customer), ...])``, every
  order in one call: it sends them all, then awaits every confirm together.
- ``raw``: aiokafka ``AIOKafkaProducer.send(topic, value, key=key)`` for every order, then ``flush()``
  (``model_dump_json().encode()``, the key encoded by hand).

Both sides run one producer with the same settings (:data:`PRODUCER`: ``acks=all``, ``linger_ms=5``,
``max_batch_size=16384``, no compression, no idempotence: listeners' defaults, set explicitly); the
listeners cases report the options their producer actually got. Every case starts from the same
pydantic models, built before the run. The first record is sent alone and awaited (it also fetches
the topic's metadata) and opens the window; the window closes when the N-th is confirmed.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Sequence
from typing import Any

from aiokafka import AIOKafkaProducer

from benchmarks.meter import Meter
from benchmarks.payload import OrderPlaced
from benchmarks.rabbit_publish import Mode, Runner, measure_case, publish_all
from benchmarks.suite import run_case
from listeners import Outgoing
from listeners.kafka.clients import producer_options
from listeners.testing import running
from starter import ListenersContainer

PRODUCER: dict[str, Any] = {
    "acks": "all",
    "linger_ms": 5,
    "max_batch_size": 16_384,
    "compression_type": None,
    "enable_idempotence": False,
}
"""The producer settings of every case (listeners' defaults)."""


def listeners_overrides(bootstrap: str) -> dict[str, Any]:
    """``listeners.kafka.producer.*`` giving listeners' producer :data:`PRODUCER`."""
    compression = PRODUCER["compression_type"]
    return {
        "listeners.kafka.bootstrap_servers": bootstrap,
        "listeners.kafka.producer.acks": PRODUCER["acks"],
        "listeners.kafka.producer.linger": PRODUCER["linger_ms"] / 1000,
        "listeners.kafka.producer.max_batch_size": PRODUCER["max_batch_size"],
        "listeners.kafka.producer.compression": "none" if compression is None else compression,
        "listeners.kafka.producer.enable_idempotence": PRODUCER["enable_idempotence"],
    }


async def run_listeners(
    args: argparse.Namespace, orders: Sequence[OrderPlaced], mode: Mode, meter: Meter
) -> dict[str, Any]:
    async with running(
        ListenersContainer(), embedded=False, overrides=listeners_overrides(args.bootstrap)
    ) as app:
        publisher = app.kafka
        used = producer_options(app.app.settings.listeners.kafka)
        mismatched = {name: used[name] for name, value in PRODUCER.items() if used[name] != value}
        if mismatched:
            raise SystemExit(f"listeners' producer got {mismatched}, not {PRODUCER}")

        async def send(item: OrderPlaced) -> Any:
            return await publisher.send(args.topic, item, key=item.customer)

        async def send_many(items: Sequence[OrderPlaced]) -> Any:
            return await publisher.send_many(
                args.topic, [Outgoing(item, key=item.customer) for item in items]
            )

        await asyncio.wait_for(publish_all(send, send_many, orders, mode, len(orders), meter), args.timeout)
    return {
        "api": "app.kafka.send_many(topic, [Outgoing(model, key=...), ...]), all in one call"
        if mode == "bulk"
        else "app.kafka.send(topic, model, key=...) awaited one by one",
        "producer": {name: used[name] for name in PRODUCER},
    }


async def run_raw(
    args: argparse.Namespace, orders: Sequence[OrderPlaced], mode: Mode, meter: Meter
) -> dict[str, Any]:
    producer = AIOKafkaProducer(bootstrap_servers=args.bootstrap, **PRODUCER)
    await producer.start()
    try:

        async def send(item: OrderPlaced) -> Any:
            return await producer.send_and_wait(
                args.topic, item.model_dump_json().encode(), key=item.customer.encode()
            )

        async def send_all(items: Sequence[OrderPlaced]) -> None:
            for item in items:
                await producer.send(args.topic, item.model_dump_json().encode(), key=item.customer.encode())
            await producer.flush()

        await asyncio.wait_for(publish_all(send, send_all, orders, mode, len(orders), meter), args.timeout)
    finally:
        await producer.stop()
    return {"api": "AIOKafkaProducer.send(topic, value, key=key) for all, then flush()", "producer": PRODUCER}


CASES: dict[str, tuple[Runner, Mode]] = {
    "listeners": (run_listeners, "one by one"),
    "listeners-bulk": (run_listeners, "bulk"),
    "raw": (run_raw, "bulk"),
}


async def measure(args: argparse.Namespace) -> dict[str, Any]:
    return await measure_case(CASES, args)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.kafka_produce", description=__doc__)
    parser.add_argument("--case", choices=list(CASES), required=True)
    parser.add_argument("--messages", type=int, default=20_000, help="records to send (default 20000)")
    parser.add_argument("--bootstrap", required=True, help="host:port of the broker")
    parser.add_argument("--topic", required=True, help="an existing topic")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds sending may take")
    return parser.parse_args(argv)


def main() -> None:
    run_case(measure, parse_args())


if __name__ == "__main__":
    main()
