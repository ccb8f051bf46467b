"""The RabbitMQ suites: consume throughput and confirmed publish throughput, listeners next to raw aio-pika.

Both run against the RabbitMQ at ``--rabbit-url`` (default: LISTENERS_TEST_RABBIT_URL, else
amqp://guest:guest@127.0.0.1:5672/). For every run and case, interleaved, on a fresh queue
(``bench.<suite>.<case>.<hex>``, deleted afterwards together with its ``.dlq``):

- ``rabbit-consume``: fill the queue with N messages (not measured), run ``benchmarks.rabbit_consume``
  in a subprocess, then check that it handled N and that the queue is empty (nothing left unacked).
- ``rabbit-publish``: declare the queue, run ``benchmarks.rabbit_publish`` in a subprocess, then check
  that the queue holds exactly N messages.
"""

from __future__ import annotations

import argparse
import asyncio
import os
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from benchmarks import rabbit_data
from benchmarks.machine import RABBIT_PACKAGES, describe, machine_info
from benchmarks.suite import Measurement, Suite, Target, check, finish, measure_all, run_process
from tests.support.rabbit_tools import RABBIT_ENV, rabbit_url

CONSUME = "rabbit-consume"
PUBLISH = "rabbit-publish"
DEFAULT_RUNS = 5
DEFAULT_MESSAGES = {CONSUME: 20_000, PUBLISH: 10_000}
CONSUME_TARGET = Target(case="listeners", baseline="raw", min_ratio=1.0)
PUBLISH_TARGET = Target(case="listeners-pipelined", baseline="raw", min_ratio=3.0)
PUBLISH_CASES = ("listeners", "listeners-pipelined", "listeners-bulk", "raw", "raw-pipelined")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("rabbit suites")
    group.add_argument(
        "--rabbit-url",
        default=rabbit_url(),
        help=f"the broker (default: {RABBIT_ENV} or amqp://guest:***@127.0.0.1:5672/); "
        f"the cases get it through {RABBIT_ENV}",
    )
    group.add_argument(
        "--consume-messages", type=int, help=f"messages per consume run (default {DEFAULT_MESSAGES[CONSUME]})"
    )
    group.add_argument(
        "--publish-messages", type=int, help=f"messages per publish run (default {DEFAULT_MESSAGES[PUBLISH]})"
    )
    group.add_argument("--prefetch", type=int, default=100, help="consume QoS of both cases (default 100)")
    group.add_argument(
        "--chunk", type=int, default=1_000, help="publishes gathered at once when pipelined (default 1000)"
    )


def measure_consume(case: str, args: argparse.Namespace, messages: int) -> Measurement:
    url: str = args.rabbit_url
    queue = rabbit_data.queue_name(CONSUME, case)
    dead_letters = queue + rabbit_data.DEAD_LETTER_SUFFIX
    arguments = [
        "--case", case, "--messages", str(messages), "--queue", queue,
        "--prefetch", str(args.prefetch), "--timeout", str(args.timeout),
    ]  # fmt: skip
    try:
        asyncio.run(rabbit_data.prepare(url, queue, messages))
        measurement = run_process(
            "benchmarks.rabbit_consume", arguments, args.timeout + 60, {RABBIT_ENV: url}
        )
        left = asyncio.run(rabbit_data.message_counts(url, [queue, dead_letters]))
    finally:
        asyncio.run(rabbit_data.delete(url, [queue, dead_letters]))
    handled, remaining, dead = measurement["handled"], left[queue], left[dead_letters] or 0
    measurement["left_in_queue"], measurement["dead_lettered"] = remaining, dead
    passed = handled == messages and remaining == 0 and dead == 0
    detail = f"handled {handled}, {remaining} left in the queue, {dead} dead-lettered"
    measurement["check"] = check(passed, detail if passed else f"CHECK FAILED: {detail}")
    return measurement


def measure_publish(case: str, args: argparse.Namespace, messages: int) -> Measurement:
    url: str = args.rabbit_url
    queue = rabbit_data.queue_name(PUBLISH, case)
    arguments = [
        "--case", case, "--messages", str(messages), "--queue", queue,
        "--chunk", str(args.chunk), "--timeout", str(args.timeout),
    ]  # fmt: skip
    try:
        asyncio.run(rabbit_data.declare(url, queue))
        measurement = run_process(
            "benchmarks.rabbit_publish", arguments, args.timeout + 60, {RABBIT_ENV: url}
        )
        in_queue = asyncio.run(rabbit_data.message_counts(url, [queue]))[queue]
    finally:
        asyncio.run(rabbit_data.delete(url, [queue]))
    measurement["in_queue"] = in_queue
    detail = f"{in_queue} in the queue"
    measurement["check"] = check(
        in_queue == messages, detail if in_queue == messages else f"CHECK FAILED: {detail}"
    )
    return measurement


def build(name: str, args: argparse.Namespace) -> Suite:
    given: int | None = args.consume_messages if name == CONSUME else args.publish_messages
    messages = given or args.messages or DEFAULT_MESSAGES[name]
    runs: int = args.runs or DEFAULT_RUNS
    window = "first handled message to the N-th"
    cases: tuple[str, ...]
    measure: Callable[[str, argparse.Namespace, int], Measurement]
    if name == CONSUME:
        cases, target, measure = ("listeners", "raw"), CONSUME_TARGET, measure_consume
        parameters = {"prefetch": args.prefetch, "window": f"{window}; the queue is filled before the case"}
    else:
        cases, target, measure = PUBLISH_CASES, PUBLISH_TARGET, measure_publish
        parameters = {"chunk": args.chunk, "window": f"{window} confirmed; the first is published alone"}
    return Suite(
        name=name,
        benchmark=name,
        cases=cases,
        baseline="raw",
        target=target,
        runs=runs,
        parameters={"messages": messages, "runs": runs, **parameters},
        measure_case=lambda case: measure(case, args, messages),
    )


def run(name: str, args: argparse.Namespace, results: Path) -> bool:
    """Run the suite ``name`` (``rabbit-consume`` or ``rabbit-publish``); False if a run's check failed."""
    url: str = args.rabbit_url
    server = rabbit_data.describe_server(url)
    suite = build(name, args)
    started = datetime.now(UTC)
    info = machine_info(server, RABBIT_PACKAGES)
    print("\n".join(describe(info)))
    detail = f"prefetch={args.prefetch}" if name == CONSUME else f"pipelined: {args.chunk} gathered at once"
    messages = suite.parameters["messages"]
    print(f"{name}: {messages:,} messages per run, {suite.runs} runs per case, interleaved, {detail}")
    measurements = measure_all(suite)
    info["load_average_at_end"] = [round(load, 2) for load in os.getloadavg()]
    return finish(suite, started, info, measurements, results)
