"""One measured Kafka consume case, run in its own process; prints one JSON line.

``python -m benchmarks.kafka_consume --case listeners|raw --messages N --bootstrap X --topic T``

- ``listeners``: a ``@kafka_listener`` method on a container-provided object, taking the pydantic
  payload and only counting; every listener option at its default (at-least-once: an offset is
  committed after its record was handled).
- ``raw``: an aiokafka ``getmany`` loop that validates every record into the same model and commits
  ``{tp: last + 1}`` after each batch.

Both consume a topic produced beforehand, with the same consumer options and ``max_poll_records``, and
are timed from the first handled message to the N-th (the group join is not measured).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
from typing import Any

from aiokafka import AIOKafkaConsumer

from benchmarks.app import counting_container
from benchmarks.meter import Meter
from benchmarks.payload import OrderPlaced
from listeners import kafka_listener
from listeners.testing import running

LISTENER_ID = "kafka-bench"
RAW_POLL_TIMEOUT_MS = 100
"""The raw loop's getmany timeout: the same as listeners' default ``listeners.kafka.poll_timeout``."""


async def run_listeners(args: argparse.Namespace, meter: Meter, *, traced: bool = False) -> dict[str, Any]:
    overrides: dict[str, Any] = {
        "listeners.kafka.bootstrap_servers": args.bootstrap,
        "listeners.kafka.consumer": args.consumer_options,
        "listeners.kafka.max_poll_records": args.max_poll_records,
    }
    if traced:  # every message sampled, spans made and ended, none exported
        overrides |= {"listeners.tracing.enabled": True, "listeners.tracing.exporter": "none"}
    container = counting_container(kafka_listener(args.topic, id=LISTENER_ID, group_id=args.group), meter)
    async with running(container, embedded=False, overrides=overrides) as app:
        await meter.wait(args.timeout)
        options = app.app.listener(LISTENER_ID).endpoint.options
        kafka = app.app.settings.listeners.kafka
        return {
            "ack_mode": options.ack_mode,
            "ordering": options.ordering or "partition",
            "max_in_flight": options.max_in_flight,
            "concurrency": options.concurrency,
            "commit_interval_s": kafka.commit_interval,
            "poll_timeout_s": kafka.poll_timeout,
            "max_poll_records": kafka.max_poll_records,
            "consumer_options": kafka.consumer,
            "tracing": traced,
        }


async def run_raw(args: argparse.Namespace, meter: Meter) -> dict[str, Any]:
    consumer = AIOKafkaConsumer(
        args.topic,
        bootstrap_servers=args.bootstrap,
        group_id=args.group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_poll_records=args.max_poll_records,
        **args.consumer_options,
    )
    await consumer.start()
    try:
        await asyncio.wait_for(_raw_loop(consumer, meter), args.timeout)
    except TimeoutError:
        raise TimeoutError(f"only {meter.count} of {meter.target} messages within {args.timeout}s") from None
    finally:
        await consumer.stop()
    return {
        "commit": "after every getmany batch",
        "poll_timeout_ms": RAW_POLL_TIMEOUT_MS,
        "max_poll_records": args.max_poll_records,
        "consumer_options": args.consumer_options,
    }


async def _raw_loop(consumer: AIOKafkaConsumer, meter: Meter) -> None:
    while meter.count < meter.target:
        batch = await consumer.getmany(timeout_ms=RAW_POLL_TIMEOUT_MS)
        for records in batch.values():
            for record in records:
                OrderPlaced.model_validate_json(record.value)
                meter.tick()
        offsets = {tp: records[-1].offset + 1 for tp, records in batch.items() if records}
        if offsets:
            await consumer.commit(offsets)


async def run_listeners_traced(args: argparse.Namespace, meter: Meter) -> dict[str, Any]:
    return await run_listeners(args, meter, traced=True)


CASES = {"listeners": run_listeners, "listeners-traced": run_listeners_traced, "raw": run_raw}


async def measure(args: argparse.Namespace) -> dict[str, Any]:
    meter = Meter(args.messages)
    config = await CASES[args.case](args, meter)
    return meter.result(args.case, config).to_json()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.kafka_consume", description=__doc__)
    parser.add_argument("--case", choices=sorted(CASES), required=True)
    parser.add_argument("--messages", type=int, default=50_000, help="records in the topic (default 50000)")
    parser.add_argument("--bootstrap", required=True, help="host:port of the broker")
    parser.add_argument("--topic", required=True, help="a topic holding --messages records")
    parser.add_argument("--group", help="consumer group (default: <topic>-<case>); must be new")
    parser.add_argument("--max-poll-records", type=int, default=500, help="default: listeners' default")
    parser.add_argument(
        "--consumer-options", type=json.loads, default={}, help="AIOKafkaConsumer options as JSON"
    )
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds to wait for every message")
    args = parser.parse_args(argv)
    args.group = args.group or f"{args.topic}-{args.case}"
    return args


def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    print(json.dumps(asyncio.run(measure(parse_args()))), flush=True)


if __name__ == "__main__":
    main()
