"""One measured RabbitMQ consume case, run in its own process; prints one JSON line.

``python -m benchmarks.rabbit_consume --case listeners|raw --messages N --queue Q [--url U]``

- ``listeners``: a ``@rabbit_listener`` method on a container-provided object, taking the pydantic
  payload and only counting; ``prefetch`` declared on the listener, every other option at its default
  (at-least-once: acknowledged after the handler; ordering ``none``; dead letters on).
- ``raw``: an aio-pika consumer with ``set_qos(prefetch_count=...)`` and ``queue.consume(callback)``;
  the callback validates every message into the same model and awaits ``message.ack()``.

Both consume a queue filled beforehand (``benchmarks.rabbit_data``) and are timed from the first
handled message to the N-th. The JSON line adds ``handled``: the messages handled by the end.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
from typing import Any

import aio_pika
from aio_pika.abc import AbstractIncomingMessage

from benchmarks.app import counting_container
from benchmarks.meter import Meter
from benchmarks.payload import OrderPlaced
from listeners import rabbit_listener
from listeners.testing import running
from tests.support.rabbit_tools import rabbit_url

LISTENER_ID = "rabbit-bench"


async def run_listeners(args: argparse.Namespace, meter: Meter) -> dict[str, Any]:
    container = counting_container(rabbit_listener(args.queue, id=LISTENER_ID, prefetch=args.prefetch), meter)
    async with running(container, embedded=False, overrides={"listeners.rabbit.url": args.url}) as app:
        await meter.wait(args.timeout)
        options = app.app.listener(LISTENER_ID).endpoint.options
        return {
            "ack_mode": options.ack_mode,
            "ordering": options.ordering,
            "prefetch": options.prefetch,
            "max_in_flight": options.max_in_flight,
            "concurrency": options.concurrency,
            "queue_type": options.queue_type,
            "durable": options.durable,
            "retry_attempts": options.retry.attempts,
            "dead_letter": options.dead_letter.enabled,
        }


async def run_raw(args: argparse.Namespace, meter: Meter) -> dict[str, Any]:
    connection = await aio_pika.connect(args.url)
    async with connection:
        channel = await connection.channel()
        await channel.set_qos(prefetch_count=args.prefetch)
        queue = await channel.declare_queue(args.queue, passive=True)

        async def on_message(message: AbstractIncomingMessage) -> None:
            OrderPlaced.model_validate_json(message.body)
            await message.ack()
            meter.tick()

        await queue.consume(on_message)
        await meter.wait(args.timeout)
    return {"ack": "await message.ack() per message, after validating", "prefetch": args.prefetch}


CASES = {"listeners": run_listeners, "raw": run_raw}


async def measure(args: argparse.Namespace) -> dict[str, Any]:
    meter = Meter(args.messages)
    config = await CASES[args.case](args, meter)
    return {**meter.result(args.case, config).to_json(), "handled": meter.count}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.rabbit_consume", description=__doc__)
    parser.add_argument("--case", choices=sorted(CASES), required=True)
    parser.add_argument("--messages", type=int, default=20_000, help="messages in the queue (default 20000)")
    parser.add_argument("--url", default=rabbit_url(), help="default: $LISTENERS_TEST_RABBIT_URL, else local")
    parser.add_argument("--queue", required=True, help="a queue holding --messages messages")
    parser.add_argument("--prefetch", type=int, default=100, help="QoS prefetch of both cases (default 100)")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds to wait for every message")
    return parser.parse_args(argv)


def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    print(json.dumps(asyncio.run(measure(parse_args()))), flush=True)


if __name__ == "__main__":
    main()
