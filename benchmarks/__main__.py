"""Throughput benchmarks: listeners next to the raw client library, same broker, same run.

    python -m benchmarks [--suite kafka|tracing|rabbit-consume|rabbit-publish|idempotency|kafka-produce|
                                  key-ordering|retry-lateness|footprint|all] [--runs R] [--messages N]

Suites (default: all, in this order):

- ``kafka``: Kafka consume throughput on Tansu (or LISTENERS_TEST_KAFKA), against a raw aiokafka
  ``getmany`` loop (``benchmarks.kafka_suite``); 50000 records, 3 runs per case by default.
- ``rabbit-consume``: RabbitMQ consume throughput, against a raw aio-pika consumer; 20000 messages.
- ``rabbit-publish``: RabbitMQ confirmed publish throughput, one by one and pipelined, against raw
  aio-pika awaiting each confirm; 10000 messages (both ``benchmarks.rabbit_suite``), 5 runs per case.
- ``idempotency``: one Kafka listener with an ``idempotency_key`` and each store (none, memory, sqlite,
  redis, postgres), under ``ordering: partition`` and ``ordering: key``, on one topic of 20000
  records produced once (``benchmarks.idempotency_suite``); 3 runs per case.
- ``kafka-produce``: Kafka confirmed produce, ``send`` one by one and ``send_many``, against a raw
  aiokafka producer's ``send`` + ``flush`` with the same settings (``benchmarks.kafka_produce_suite``);
  20000 records (1000 one by one), 3 runs per case.
- ``key-ordering``: one listener on one partition of 1000 keys, a 10 ms handler, ``ordering: key``
  against ``ordering: partition`` (``benchmarks.key_ordering_suite``); 20000 records (300 under
  partition ordering), 3 runs per case.
- ``retry-lateness``: how late non-blocking retries run after their due time on Kafka retry topics and
  RabbitMQ delay tiers, a latency table (``benchmarks.retry_lateness_suite``); 1000 orders at 200/s,
  retried after 1 s, 3 runs per case.
- ``footprint``: startup time to the first handled message, RSS of an idle app with 20 listeners, and
  RSS under a sustained 10x overload, each in a real ``listeners run`` process
  (``benchmarks.footprint_suite``); 3 runs per case.

Each suite runs its cases interleaved, each run in its own subprocess, prints a table of medians and
writes every measurement to ``benchmarks/results/<date>-<suite>.json``. Exits non-zero when a run's
correctness check failed (a missed throughput target is reported, not an error).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from benchmarks import (
    footprint_suite,
    idempotency_suite,
    kafka_produce_suite,
    kafka_suite,
    key_ordering_suite,
    rabbit_suite,
    retry_lateness_suite,
)
from benchmarks.suite import RESULTS

SUITES = (
    "kafka",
    kafka_suite.TRACING,
    rabbit_suite.CONSUME,
    rabbit_suite.PUBLISH,
    idempotency_suite.NAME,
    kafka_produce_suite.NAME,
    key_ordering_suite.NAME,
    retry_lateness_suite.NAME,
    footprint_suite.NAME,
)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.split("\n\n")[0])
    parser.add_argument("--suite", choices=(*SUITES, "all"), default="all", help="what to run (default all)")
    parser.add_argument(
        "--runs",
        type=int,
        help="measured runs per case (default: kafka and idempotency 3, rabbit 5); medians are reported",
    )
    parser.add_argument("--messages", type=int, help="messages per run of every suite (default: per suite)")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds one run may take (default 300)")
    parser.add_argument("--results-dir", type=Path, default=RESULTS, help="default: benchmarks/results")
    kafka_suite.add_arguments(parser)
    rabbit_suite.add_arguments(parser)
    idempotency_suite.add_arguments(parser)
    kafka_produce_suite.add_arguments(parser)
    key_ordering_suite.add_arguments(parser)
    retry_lateness_suite.add_arguments(parser)
    footprint_suite.add_arguments(parser)
    args = parser.parse_args()
    counts = (
        args.messages,
        args.kafka_messages,
        args.consume_messages,
        args.publish_messages,
        args.idempotency_messages,
        args.produce_messages,
        args.ordering_messages,
        args.retry_messages,
    )
    if (args.runs is not None and args.runs < 1) or any(n is not None and n < 2 for n in counts):
        parser.error("runs must be >= 1 and message counts >= 2")
    if args.chunk < 1 or args.prefetch < 1:
        parser.error("--chunk and --prefetch must be >= 1")
    if args.retry_rate <= 0 or args.retry_delay <= 0:
        parser.error("--retry-rate and --retry-delay must be > 0")
    return args


def main() -> None:
    args = parse_args()
    selected = SUITES if args.suite == "all" else (args.suite,)
    failed = []
    for index, name in enumerate(selected):
        if index:
            print()
        print(f"== {name}")
        if name == "kafka":
            passed = kafka_suite.run(args, args.results_dir)
        elif name == kafka_suite.TRACING:
            passed = kafka_suite.run_tracing(args, args.results_dir)
        elif name == idempotency_suite.NAME:
            passed = idempotency_suite.run(args, args.results_dir)
        elif name == kafka_produce_suite.NAME:
            passed = kafka_produce_suite.run(args, args.results_dir)
        elif name == key_ordering_suite.NAME:
            passed = key_ordering_suite.run(args, args.results_dir)
        elif name == retry_lateness_suite.NAME:
            passed = retry_lateness_suite.run(args, args.results_dir)
        elif name == footprint_suite.NAME:
            passed = footprint_suite.run(args, args.results_dir)
        else:
            passed = rabbit_suite.run(name, args, args.results_dir)
        if not passed:
            failed.append(name)
    if failed:
        raise SystemExit(f"correctness checks failed in: {', '.join(failed)}")


if __name__ == "__main__":
    main()
