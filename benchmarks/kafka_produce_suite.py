"""The Kafka confirmed-produce suite: listeners' publisher next to a raw aiokafka producer, same broker.

Starts the broker once (as the Kafka consume suite does), then for every run and case, interleaved
(listeners, listeners-bulk, raw, ...): creates a fresh topic of ``--partitions`` partitions, runs the
case in its own subprocess (``benchmarks.kafka_produce``), checks that the topic's end offsets add up
to exactly the records the case sent, and deletes the topic. ``listeners`` (one confirmed send at a
time) sends fewer records (``ONE_BY_ONE_MESSAGES`` at most), as it waits for every confirm in turn.
"""

from __future__ import annotations

import argparse
import asyncio
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

from benchmarks import kafka_data
from benchmarks.kafka_produce import PRODUCER
from benchmarks.kafka_suite import on_broker
from benchmarks.suite import Measurement, Suite, Target, check, run_process

if TYPE_CHECKING:
    from tests.support.brokers import KafkaBroker

NAME = "kafka-produce"
DEFAULT_MESSAGES = 20_000
ONE_BY_ONE_MESSAGES = 1_000
"""Records the one-by-one case sends at most: it waits for each confirm, about a linger (5 ms) per record."""
DEFAULT_RUNS = 3
CASES = ("listeners", "listeners-bulk", "raw")
TARGET = Target(case="listeners-bulk", baseline="raw", min_ratio=0.8)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("kafka-produce suite (also uses --partitions)")
    group.add_argument(
        "--produce-messages",
        type=int,
        help=f"records per run (default {DEFAULT_MESSAGES}, or --messages; "
        f"the one-by-one case at most {ONE_BY_ONE_MESSAGES})",
    )


def case_messages(case: str, messages: int) -> int:
    return min(messages, ONE_BY_ONE_MESSAGES) if case == "listeners" else messages


def measure_case(broker: KafkaBroker, case: str, args: argparse.Namespace, messages: int) -> Measurement:
    """Send ``messages`` records to a fresh topic in a subprocess; check the topic holds exactly those."""
    topic = f"bench-produce-{case}-{uuid.uuid4().hex[:10]}"
    asyncio.run(kafka_data.create_topic(broker.bootstrap, topic, args.partitions))
    arguments = [
        "--case", case, "--messages", str(messages), "--bootstrap", broker.bootstrap, "--topic", topic,
        "--timeout", str(args.timeout),
    ]  # fmt: skip
    try:
        measurement = run_process("benchmarks.kafka_produce", arguments, args.timeout + 60)
        ends, records = asyncio.run(kafka_data.end_offsets(broker.bootstrap, topic))
    finally:
        asyncio.run(kafka_data.delete_topic(broker.bootstrap, topic))
    measurement["end_offsets"], measurement["records_read"] = ends, records
    passed = sum(ends.values()) == records == messages
    detail = f"end offsets {dict(sorted(ends.items()))} sum to {sum(ends.values())}, {records} records read"
    measurement["check"] = check(passed, detail if passed else f"CHECK FAILED: {detail}")
    return measurement


def run(args: argparse.Namespace, results: Path) -> bool:
    """Run the suite; False if a run's check failed."""
    messages: int = args.produce_messages or args.messages or DEFAULT_MESSAGES
    runs: int = args.runs or DEFAULT_RUNS
    one_by_one = case_messages("listeners", messages)

    def build(broker: KafkaBroker) -> tuple[Suite, str]:
        suite = Suite(
            name=NAME,
            benchmark=NAME,
            cases=CASES,
            baseline="raw",
            target=TARGET,
            runs=runs,
            parameters={
                "messages": messages,
                "messages_one_by_one": one_by_one,
                "runs": runs,
                "partitions": args.partitions,
                "producer": PRODUCER,
                "keys": "1000 distinct (the order's customer)",
                "window": "first record sent alone and confirmed, to the N-th confirmed",
            },
            measure_case=lambda case: measure_case(broker, case, args, case_messages(case, messages)),
        )
        headline = (
            f"kafka produce: {messages:,} records per run ({one_by_one:,} for listeners one by one) to a "
            f"fresh topic of {args.partitions} partitions, {runs} runs per case, interleaved\n"
            f"producer settings of every case: {PRODUCER}"
        )
        return suite, headline

    return on_broker(build, results)
