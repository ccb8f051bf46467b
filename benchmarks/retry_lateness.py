"""One measured retry-lateness case, run in its own process; prints one JSON line.

``python -m benchmarks.retry_lateness --case kafka|rabbit --messages N --rate R --delay D
(--bootstrap X --topic T --group G | --url U --queue Q)``

A listener method taking the pydantic payload and its ``Message``, with non-blocking retries
(``retry: {attempts: 2, mode: non-blocking, backoff: {delay: D, multiplier: 1, jitter: 0}}``, every
other option at its default), fails the first attempt of every message and succeeds on the second.
The case publishes N orders through the app's own publisher, paced at R per second (``send_many`` /
``publish_many`` of R/20 orders every 50 ms), while the listener runs:

- ``kafka``: to a topic (created by the driver); the retry topic ``<topic>-retry-<D ms>`` and the
  dead-letter topic are provisioned by the listener (``listeners.kafka.provisioning.enabled``). The
  due time is the record's ``retry_topic-backoff-timestamp`` header (epoch ms, the framework's own
  promise: its first failure + D, rounded up).
- ``rabbit``: to a queue the listener declares, with the delay tier ``<queue>.retry.<D ms>``. The due
  time is the header ``listeners-retry-started`` (the first failure, epoch ms, truncated) + D.

For every second attempt the handler records ``lateness = handled_at - due`` (ms, wall clock at the
handler's start), and ``since_failure = handled_at - (its own clock at the failing attempt + D)``.
Both must never be negative (beyond the 1 ms of the header's whole milliseconds). The meter counts the
second attempts; its window runs from the first to the N-th.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from benchmarks.handler_app import handler_container
from benchmarks.meter import Meter
from benchmarks.payload import OrderPlaced, order
from benchmarks.report import distribution
from benchmarks.suite import run_case
from listeners import Message, Outgoing, kafka_listener, rabbit_listener
from listeners.deadletter.headers import decimal_int
from listeners.retry.kafka_wire import retry_state
from listeners.retry.timeout import RETRY_STARTED
from listeners.testing import TestApp, running

LISTENER_ID = "retry-lateness-bench"
CASES = ("kafka", "rabbit")
PACE_SECONDS = 0.05
"""Publishing slot: R * PACE_SECONDS orders go out together every PACE_SECONDS."""


class FirstAttemptFails(Exception):
    """What the handler raises on every first attempt."""


class LatenessHandler:
    """Fails attempt 1, records attempt 2's lateness against the due time the message carries."""

    def __init__(self, case: str, delay: float, meter: Meter) -> None:
        self._case = case
        self._delay = delay
        self._meter = meter
        self._failed_at: dict[str, float] = {}
        self.lateness_ms: list[float] = []
        self.since_failure_ms: list[float] = []
        self.unknown_due = 0

    async def handle(self, item: OrderPlaced, message: Message) -> None:
        now = time.time()
        if message.attempt == 1:
            self._failed_at[item.order_id] = now
            raise FirstAttemptFails(item.order_id)
        due_ms = self.due_ms(message)
        if due_ms is None:
            self.unknown_due += 1
        else:
            self.lateness_ms.append(now * 1000 - due_ms)
        failed_at = self._failed_at.get(item.order_id)
        if failed_at is not None:
            self.since_failure_ms.append((now - failed_at - self._delay) * 1000)
        self._meter.tick()

    def due_ms(self, message: Message) -> int | None:
        if self._case == "kafka":
            return retry_state(message.headers).due_ms
        started = decimal_int(message.headers.get(RETRY_STARTED))
        return None if started is None else started + round(self._delay * 1000)

    def report(self) -> dict[str, Any]:
        return {
            "lateness_ms": distribution(self.lateness_ms) if self.lateness_ms else None,
            "since_failure_ms": distribution(self.since_failure_ms) if self.since_failure_ms else None,
            "unknown_due": self.unknown_due,
        }


Publish = Callable[[Sequence[OrderPlaced]], Awaitable[Any]]


async def publish_paced(publish: Publish, messages: int, rate: float) -> None:
    """``messages`` orders, ``rate * PACE_SECONDS`` of them every ``PACE_SECONDS`` (never ahead)."""
    per_slot = max(1, round(rate * PACE_SECONDS))
    loop = asyncio.get_running_loop()
    start = loop.time()
    for slot, first in enumerate(range(0, messages, per_slot)):
        await asyncio.sleep(max(0.0, start + slot * PACE_SECONDS - loop.time()))
        await publish([order(index) for index in range(first, min(first + per_slot, messages))])


def publisher(args: argparse.Namespace, app: TestApp) -> Publish:
    if args.case == "kafka":
        return lambda items: app.kafka.send_many(
            args.topic, [Outgoing(item, key=item.customer) for item in items]
        )
    return lambda items: app.rabbit.publish_many("", args.queue, items)


def listener(args: argparse.Namespace) -> tuple[Callable[[Any], Any], dict[str, Any]]:
    """The listener declaration of the case and the settings overrides it runs with."""
    retry = {
        "attempts": 2,
        "mode": "non-blocking",
        "backoff": {"delay": args.delay, "multiplier": 1.0, "jitter": 0.0},
    }
    if args.case == "kafka":
        overrides = {
            "listeners.kafka.bootstrap_servers": args.bootstrap,
            "listeners.kafka.consumer": args.consumer_options,
            "listeners.kafka.provisioning.enabled": True,
        }
        return kafka_listener(args.topic, id=LISTENER_ID, group_id=args.group, retry=retry), overrides
    return rabbit_listener(args.queue, id=LISTENER_ID, retry=retry), {"listeners.rabbit.url": args.url}


async def measure(args: argparse.Namespace) -> dict[str, Any]:
    meter = Meter(args.messages)
    handler = LatenessHandler(args.case, args.delay, meter)
    declare, overrides = listener(args)
    async with running(
        handler_container(declare, handler.handle), embedded=False, overrides=overrides
    ) as app:
        await asyncio.wait_for(publish_paced(publisher(args, app), args.messages, args.rate), args.timeout)
        await meter.wait(args.timeout)
        stats = app.stats(LISTENER_ID)
        await app.wait_for(lambda: stats.processed >= args.messages, args.timeout)
        options = app.app.listener(LISTENER_ID).endpoint.options
        config = {
            "retry": options.retry.model_dump(mode="json", include={"attempts", "mode", "backoff"}),
            "ordering": options.ordering or ("partition" if args.case == "kafka" else "none"),
            "max_in_flight": options.max_in_flight,
            "published": f"{args.messages} at {args.rate:g}/s through the app's publisher",
            "due": "retry_topic-backoff-timestamp"
            if args.case == "kafka"
            else f"{RETRY_STARTED} + {args.delay * 1000:.0f} ms",
        }
        if args.case == "kafka":
            config["consumer_options"] = app.app.settings.listeners.kafka.consumer
    result = meter.result(args.case, config).to_json()
    outcomes = {"processed": stats.processed, "retried": stats.retried, "dead_lettered": stats.dead_lettered}
    return {**result, **handler.report(), "stats": outcomes}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.retry_lateness", description=__doc__)
    parser.add_argument("--case", choices=CASES, required=True)
    parser.add_argument("--messages", type=int, default=1_000, help="orders to publish (default 1000)")
    parser.add_argument("--rate", type=float, default=200.0, help="orders published per second (default 200)")
    parser.add_argument("--delay", type=float, default=1.0, help="retry back-off in seconds (default 1)")
    parser.add_argument("--bootstrap", help="kafka: host:port of the broker")
    parser.add_argument("--topic", help="kafka: an existing topic")
    parser.add_argument("--group", help="kafka: a new consumer group")
    parser.add_argument("--consumer-options", type=json.loads, default={}, help="kafka: as JSON")
    parser.add_argument("--url", help="rabbit: the broker's URL")
    parser.add_argument("--queue", help="rabbit: a new queue name (the listener declares it)")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds to wait for every retry")
    return parser.parse_args(argv)


def main() -> None:
    run_case(measure, parse_args(), quiet=("listeners.retry",))  # it logs a warning per retry


if __name__ == "__main__":
    main()
