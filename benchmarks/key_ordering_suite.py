"""The key-ordering suite: one listener under ``ordering: key`` next to ``ordering: partition``.

Starts the broker once (as the Kafka consume suite does), then for every run and case, interleaved
(key, partition, ...): creates a fresh topic of ONE partition, produces its records (1000 distinct
keys; not measured), runs the case in its own subprocess (``benchmarks.key_ordering``), and checks
that its group committed every record and that the handler saw every sequence once, each key's in
increasing order and never two of one key at a time. ``partition`` handles one message at a time
(100 msgs/s at 10 ms each), so it runs fewer records (``PARTITION_MESSAGES`` at most); both report
msgs/s.
"""

from __future__ import annotations

import argparse
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

from benchmarks.kafka_suite import consume_fresh_topic, on_broker
from benchmarks.key_ordering import HANDLER_SECONDS, ORDERINGS
from benchmarks.suite import Measurement, Suite, Target, check, finish

if TYPE_CHECKING:
    from datetime import datetime
    from typing import Any

    from tests.support.brokers import KafkaBroker

NAME = "key-ordering"
DEFAULT_MESSAGES = 20_000
PARTITION_MESSAGES = 300
"""Records the ``partition`` case handles at most (about 3 s at 10 ms each)."""
DEFAULT_RUNS = 3
PROBLEMS = ("missing", "repeated", "out_of_order", "overlapping")
"""What ``benchmarks.key_ordering`` counts in ``seen``; a run passes when every count is 0."""
TARGET = Target(case="key", baseline="partition", min_ratio=50.0)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("key-ordering suite (also uses --max-poll-records, --consumer-options)")
    group.add_argument(
        "--ordering-messages",
        type=int,
        help=f"records per key run (default {DEFAULT_MESSAGES}, or --messages; "
        f"the partition case at most {PARTITION_MESSAGES})",
    )


def case_messages(case: str, messages: int) -> int:
    return min(messages, PARTITION_MESSAGES) if case == "partition" else messages


def measure_case(broker: KafkaBroker, case: str, args: argparse.Namespace, messages: int) -> Measurement:
    """Consume a fresh one-partition topic of ``messages`` records; check commits, order and completeness."""
    topic = f"bench-ordering-{case}-{uuid.uuid4().hex[:10]}"
    measurement, uncommitted = consume_fresh_topic(
        broker, "benchmarks.key_ordering", ["--ordering", case], topic, 1, messages, args
    )
    seen = measurement["seen"]
    problems = [f"{seen[name]} {name}" for name in PROBLEMS if seen[name]]
    if uncommitted:
        problems.append(uncommitted)
    detail = f"{seen['handled']} handled over {seen['keys']} keys, in order per key, all committed"
    measurement["check"] = check(not problems, "CHECK FAILED: " + "; ".join(problems) if problems else detail)
    return measurement


def finish_versus_partition(
    suite: Suite, started: datetime, info: dict[str, Any], measurements: list[Measurement], results: Path
) -> bool:
    return finish(suite, started, info, measurements, results, versus="partition")


def run(args: argparse.Namespace, results: Path) -> bool:
    """Run the suite; False if a run's check failed."""
    messages: int = args.ordering_messages or args.messages or DEFAULT_MESSAGES
    runs: int = args.runs or DEFAULT_RUNS
    partition = case_messages("partition", messages)

    def build(broker: KafkaBroker) -> tuple[Suite, str]:
        suite = Suite(
            name=NAME,
            benchmark="kafka-key-ordering",
            cases=ORDERINGS,
            baseline="partition",
            target=TARGET,
            runs=runs,
            parameters={
                "messages": {"key": messages, "partition": partition},
                "runs": runs,
                "partitions": 1,
                "keys": "1000 distinct",
                "handler": f"await asyncio.sleep({HANDLER_SECONDS})",
                "max_poll_records": args.max_poll_records,
                "window": "first handled message to the N-th; records produced before the consumer starts",
            },
            measure_case=lambda case: measure_case(broker, case, args, case_messages(case, messages)),
        )
        headline = (
            f"key ordering: one partition, 1000 keys, a handler sleeping {HANDLER_SECONDS * 1000:.0f} ms; "
            f"{messages:,} records per key run, {partition:,} per partition run (one at a time: "
            f"compare msgs/s), {runs} runs per case, interleaved"
        )
        return suite, headline

    return on_broker(build, results, finish_versus_partition)
