"""One measured key-ordering case, run in its own process; prints one JSON line.

``python -m benchmarks.key_ordering --ordering key|partition --messages N --bootstrap X --topic T
--group G``

A ``@kafka_listener`` method taking the pydantic payload and its ``Message``, declared with
``ordering=`` key or partition and every other option at its default (``max_in_flight`` 256), on a
topic of ONE partition holding N records of 1000 distinct keys, produced beforehand. The handler
records (key, sequence) when it starts, awaits ``asyncio.sleep(HANDLER_SECONDS)`` (a 10 ms call
elsewhere) and counts. Timed from the first handled message to the N-th.

Besides the measurement it reports what the handler saw: ``missing`` (sequences never handled),
``repeated`` (handled more than once), ``out_of_order`` (a key's sequence not above the one it last
started) and ``overlapping`` (a key started while its previous message was still in the handler).
"""

from __future__ import annotations

import argparse
import asyncio
import json
from typing import Any

from benchmarks.handler_app import handler_container
from benchmarks.meter import Meter
from benchmarks.payload import OrderPlaced
from benchmarks.suite import run_case
from listeners import Message, kafka_listener
from listeners.testing import running

LISTENER_ID = "key-ordering-bench"
ORDERINGS = ("key", "partition")
HANDLER_SECONDS = 0.010


class OrderedHandler:
    """Sleeps per message and checks, as it goes, that each key runs alone and in sequence."""

    def __init__(self, meter: Meter) -> None:
        self._meter = meter
        self._last: dict[str, int] = {}
        self._active: set[str] = set()
        self.seen: list[int] = []
        self.out_of_order = 0
        self.overlapping = 0

    async def handle(self, order: OrderPlaced, message: Message) -> None:
        sequence = int(order.order_id.removeprefix("order-"))
        key = order.customer
        if key in self._active:
            self.overlapping += 1
        if self._last.get(key, -1) >= sequence:
            self.out_of_order += 1
        self._active.add(key)
        self._last[key] = sequence
        self.seen.append(sequence)
        try:
            await asyncio.sleep(HANDLER_SECONDS)
        finally:
            self._active.discard(key)
        self._meter.tick()

    def report(self, messages: int) -> dict[str, int]:
        distinct = set(self.seen)
        return {
            "handled": len(self.seen),
            "keys": len(self._last),
            "missing": len(set(range(messages)) - distinct),
            "repeated": len(self.seen) - len(distinct),
            "out_of_order": self.out_of_order,
            "overlapping": self.overlapping,
        }


async def measure(args: argparse.Namespace) -> dict[str, Any]:
    meter = Meter(args.messages)
    handler = OrderedHandler(meter)
    declare = kafka_listener(args.topic, id=LISTENER_ID, group_id=args.group, ordering=args.ordering)
    overrides = {
        "listeners.kafka.bootstrap_servers": args.bootstrap,
        "listeners.kafka.consumer": args.consumer_options,
        "listeners.kafka.max_poll_records": args.max_poll_records,
    }
    async with running(
        handler_container(declare, handler.handle), embedded=False, overrides=overrides
    ) as app:
        await meter.wait(args.timeout)
        stats = app.stats(LISTENER_ID)
        await app.wait_for(lambda: stats.processed >= args.messages, args.timeout)
        options = app.app.listener(LISTENER_ID).endpoint.options
        config = {
            "ordering": options.ordering or "partition",
            "max_in_flight": options.max_in_flight,
            "concurrency": options.concurrency,
            "ack_mode": options.ack_mode,
            "handler": f"await asyncio.sleep({HANDLER_SECONDS})",
            "max_poll_records": app.app.settings.listeners.kafka.max_poll_records,
            "consumer_options": app.app.settings.listeners.kafka.consumer,
        }
    return {**meter.result(args.ordering, config).to_json(), "seen": handler.report(args.messages)}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.key_ordering", description=__doc__)
    parser.add_argument("--ordering", choices=ORDERINGS, required=True)
    parser.add_argument("--messages", type=int, required=True, help="records in the topic")
    parser.add_argument("--bootstrap", required=True, help="host:port of the broker")
    parser.add_argument("--topic", required=True, help="a one-partition topic holding --messages records")
    parser.add_argument("--group", required=True, help="consumer group; must be new")
    parser.add_argument("--max-poll-records", type=int, default=500)
    parser.add_argument("--consumer-options", type=json.loads, default={}, help="as JSON")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds to wait for every message")
    return parser.parse_args(argv)


def main() -> None:
    run_case(measure, parse_args())


if __name__ == "__main__":
    main()
