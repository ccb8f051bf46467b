"""One measured idempotency case, run in its own process; prints one JSON line.

``python -m benchmarks.idempotency_consume --store none|memory|sqlite|redis|postgres --ordering
partition|key --messages N --bootstrap X --topic T --group G [store options]``

The application is the Kafka consume suite's (``benchmarks.app``: a ``@kafka_listener`` method taking
the pydantic payload and only counting), declared with ``idempotency_key="order_id"`` (distinct in
every record, so every message is claimed, handled and completed) and ``idempotency: {store: S}``;
``none`` declares no key. ``--ordering`` and ``--max-in-flight`` (default 256) are set on the
listener, every other option is at its default. Timed from the first handled message to the N-th
(the group join and the store's start are not measured). The store's connection comes from ``--sqlite-path``,
``--redis-url``/``--redis-prefix`` or ``--postgres-dsn``/``--postgres-table``; the driver
(``benchmarks.idempotency_suite``) makes them unique per run and checks and removes what they hold.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
from pathlib import Path
from typing import Any

from benchmarks.app import counting_container
from benchmarks.meter import Meter
from listeners import kafka_listener
from listeners.testing import running

LISTENER_ID = "idem-bench"
KEY_FIELD = "order_id"
STORES = ("none", "memory", "sqlite", "redis", "postgres")
ORDERINGS = ("partition", "key")
MAX_IN_FLIGHT = 256


def store_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """``listeners.idempotency.*`` settings of the chosen store."""
    if args.store == "sqlite":
        return {"listeners.idempotency.sqlite.path": args.sqlite_path}
    if args.store == "redis":
        return {
            "listeners.idempotency.redis.url": args.redis_url,
            "listeners.idempotency.redis.prefix": args.redis_prefix,
        }
    if args.store == "postgres":
        return {
            "listeners.idempotency.postgres.dsn": args.postgres_dsn,
            "listeners.idempotency.postgres.table": args.postgres_table,
        }
    return {}


async def measure(args: argparse.Namespace) -> dict[str, Any]:
    meter = Meter(args.messages)
    keyed: dict[str, Any] = {}
    if args.store != "none":
        keyed = {"idempotency_key": KEY_FIELD, "idempotency": {"store": args.store}}
    declare = kafka_listener(
        args.topic,
        id=LISTENER_ID,
        group_id=args.group,
        ordering=args.ordering,
        max_in_flight=args.max_in_flight,
        **keyed,
    )
    overrides = {
        "listeners.kafka.bootstrap_servers": args.bootstrap,
        "listeners.kafka.consumer": args.consumer_options,
        "listeners.kafka.max_poll_records": args.max_poll_records,
        **store_overrides(args),
    }
    async with running(counting_container(declare, meter), embedded=False, overrides=overrides) as app:
        await meter.wait(args.timeout)
        # The N-th handler has returned; its completion (and its outcome) follow.
        stats = app.stats(LISTENER_ID)
        await app.wait_for(lambda: stats.processed + stats.duplicates_skipped >= args.messages, args.timeout)
        options = app.app.listener(LISTENER_ID).endpoint.options
        config = {
            "store": args.store,
            "idempotency_key": KEY_FIELD if args.store != "none" else None,
            "ordering": options.ordering or "partition",
            "max_in_flight": options.max_in_flight,
            "ack_mode": options.ack_mode,
            "max_poll_records": app.app.settings.listeners.kafka.max_poll_records,
            "consumer_options": app.app.settings.listeners.kafka.consumer,
        }
    result = meter.result(f"{args.store}/{args.ordering}", config).to_json()
    result["peak_rss_mb"] = own_peak_rss_mb(result["peak_rss_mb"])
    result["stats"] = {"processed": stats.processed, "duplicates_skipped": stats.duplicates_skipped}
    return result


def own_peak_rss_mb(fallback: float) -> float:
    """This process's own peak RSS (``VmHWM``). ``ru_maxrss`` outlives ``exec`` on Linux, so in a process
    the driver forked it would report the driver's peak when that was higher."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    except (OSError, ValueError, IndexError):
        pass
    return fallback


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.idempotency_consume", description=__doc__)
    parser.add_argument("--store", choices=STORES, required=True)
    parser.add_argument("--ordering", choices=ORDERINGS, default="partition")
    parser.add_argument("--messages", type=int, default=20_000, help="records in the topic")
    parser.add_argument("--bootstrap", required=True, help="host:port of the broker")
    parser.add_argument("--topic", required=True, help="a topic holding --messages records")
    parser.add_argument("--group", required=True, help="consumer group; must be new")
    parser.add_argument("--max-poll-records", type=int, default=500)
    parser.add_argument("--max-in-flight", type=int, default=MAX_IN_FLIGHT, help="the listener's option")
    parser.add_argument("--consumer-options", type=json.loads, default={}, help="as JSON")
    parser.add_argument("--sqlite-path", help="the SQLite store's database file")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--redis-prefix", help="the Redis store's key prefix")
    parser.add_argument("--postgres-dsn", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--postgres-table", help="the PostgreSQL store's table (created at start)")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds to wait for every message")
    return parser.parse_args(argv)


def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    print(json.dumps(asyncio.run(measure(parse_args()))), flush=True)


if __name__ == "__main__":
    main()
