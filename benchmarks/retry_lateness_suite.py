"""The retry-lateness suite: how late non-blocking retries run against their due time, never early.

Starts the Kafka broker once (as the Kafka consume suite does) and uses the RabbitMQ at
``--rabbit-url``; for every run and case, interleaved (kafka, rabbit, ...), on a fresh topic of
``--partitions`` partitions or a fresh queue, runs ``benchmarks.retry_lateness`` in a subprocess:
N orders published at a steady rate, each failing once and retried after ``--retry-delay`` through
the broker's delay tier. A run passes when every order was retried once and then processed (nothing
dead-lettered, each retry's due time known), no retry ran before its due time (lateness >= -1 ms: the
headers hold whole milliseconds) by the header's nor by the handler's own clock, and (RabbitMQ) the
queue, its tier and its dead-letter queue are empty afterwards. The topics and queues are deleted.
The report is a latency table; the target is a median p99 lateness of at most ``TARGET_P99_MS``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import uuid
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from benchmarks import kafka_data, rabbit_data, report
from benchmarks.kafka_suite import consumer_options, on_broker
from benchmarks.retry_lateness import CASES
from benchmarks.suite import Measurement, Suite, check, conclude, document, run_process

if TYPE_CHECKING:
    from tests.support.brokers import KafkaBroker

NAME = "retry-lateness"
DEFAULT_MESSAGES = 1_000
DEFAULT_RUNS = 3
TARGET_P99_MS = 250.0
EARLY_TOLERANCE_MS = -1.0
"""The lowest lateness that is not early: due times travel as whole milliseconds."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("retry-lateness suite (also uses --partitions, --rabbit-url)")
    group.add_argument(
        "--retry-messages", type=int, help=f"orders per run (default {DEFAULT_MESSAGES}, or --messages)"
    )
    group.add_argument("--retry-rate", type=float, default=200.0, help="orders published per second (200)")
    group.add_argument("--retry-delay", type=float, default=1.0, help="the retry back-off, seconds (1)")
    group.add_argument(
        "--retry-cases", default=",".join(CASES), help=f"comma-separated (default {','.join(CASES)})"
    )


def where(case: str, broker: KafkaBroker, args: argparse.Namespace) -> tuple[list[str], list[str]]:
    """The case's options for a fresh topic or queue, and the topics or queues to delete afterwards."""
    if case == "kafka":
        topic = f"bench-retry-{uuid.uuid4().hex[:10]}"
        asyncio.run(kafka_data.create_topic(broker.bootstrap, topic, args.partitions))
        options = [
            "--bootstrap", broker.bootstrap, "--topic", topic, "--group", f"{topic}-group",
            "--consumer-options", json.dumps(consumer_options(broker, args)),
        ]  # fmt: skip
        return options, [topic, f"{topic}-retry-{round(args.retry_delay * 1000)}", f"{topic}-dlt"]
    queue = rabbit_data.queue_name(NAME, case)
    tier = f"{queue}.retry.{round(args.retry_delay * 1000)}"
    return ["--url", args.rabbit_url, "--queue", queue], [queue, tier, queue + rabbit_data.DEAD_LETTER_SUFFIX]


def measure_case(broker: KafkaBroker, case: str, args: argparse.Namespace, messages: int) -> Measurement:
    options, made = where(case, broker, args)
    arguments = [
        "--case", case, "--messages", str(messages), "--rate", str(args.retry_rate),
        "--delay", str(args.retry_delay), "--timeout", str(args.timeout), *options,
    ]  # fmt: skip
    left: dict[str, int | None] = {}
    try:
        measurement = run_process("benchmarks.retry_lateness", arguments, args.timeout + 60)
        if case == "rabbit":
            left = asyncio.run(rabbit_data.message_counts(args.rabbit_url, made))
    finally:
        if case == "kafka":
            for topic in made:
                asyncio.run(kafka_data.delete_topic(broker.bootstrap, topic))
        else:
            asyncio.run(rabbit_data.delete(args.rabbit_url, made))
    measurement["check"] = verify(measurement, messages, left)
    return measurement


def verify(measurement: Measurement, messages: int, left: dict[str, int | None]) -> dict[str, Any]:
    """The run's check: every order retried once then processed, none early, nothing left behind."""
    stats, lateness, since = measurement["stats"], measurement["lateness_ms"], measurement["since_failure_ms"]
    problems = []
    if (stats["retried"], stats["processed"], stats["dead_lettered"]) != (messages, messages, 0):
        problems.append(f"{stats} of {messages}")
    if measurement["unknown_due"] or lateness is None or lateness["count"] != messages:
        problems.append(f"due time known for {lateness and lateness['count']} of {messages}")
    for what, stat in (("the header's due time", lateness), ("the failure + delay", since)):
        if stat is not None and stat["min"] < EARLY_TOLERANCE_MS:
            problems.append(f"EARLY: {-stat['min']:.1f} ms before {what}")
    leftovers = {queue: count for queue, count in left.items() if count}
    if leftovers:
        problems.append(f"left in queues: {leftovers}")
    if problems:
        return check(False, "CHECK FAILED: " + "; ".join(problems))
    return check(True, f"{messages} retried once and processed, none early")


def progress(run: int, runs: int, measurement: Measurement) -> str:
    lateness = measurement["lateness_ms"] or {"p50": 0.0, "p99": 0.0, "max": 0.0, "min": 0.0}
    return (
        f"run {run}/{runs} {measurement['case']:>6}: lateness p50 {lateness['p50']:.1f} ms, "
        f"p99 {lateness['p99']:.1f} ms, max {lateness['max']:.1f} ms, min {lateness['min']:.1f} ms; "
        f"CPU {measurement['cpu_s_per_1000']:.4f} s/1000, peak RSS {measurement['peak_rss_mb']:.0f} MB, "
        f"{measurement['check']['detail']}"
    )


def verdicts(measurements: list[Measurement]) -> list[dict[str, Any]]:
    """Per case: the median of the runs' p99 lateness against :data:`TARGET_P99_MS`."""
    found = []
    for case, runs in report.by_case(measurements).items():
        p99 = statistics.median(
            run["lateness_ms"]["p99"] if run["lateness_ms"] else float("inf") for run in runs
        )
        found.append({"case": case, "max_p99_ms": TARGET_P99_MS, "p99_ms": p99, "met": p99 <= TARGET_P99_MS})
    return found


def finish(
    suite: Suite, started: datetime, info: dict[str, Any], measurements: list[Measurement], results: Path
) -> bool:
    """Print the latency table and the verdicts, write the results file; False if a check failed."""
    targets = verdicts(measurements)
    results_document = document(suite, started, info, measurements, {"targets": targets})
    lines = [
        f"target {target['case']} median p99 lateness <= {target['max_p99_ms']:.0f} ms: "
        f"{'met' if target['met'] else 'MISSED'} ({target['p99_ms']:.1f} ms)"
        for target in targets
    ]
    return conclude(
        suite, results_document, report.latency_table(measurements, "lateness_ms"), lines, results
    )


def run(args: argparse.Namespace, results: Path) -> bool:
    """Run the suite; False if a run's check failed."""
    messages: int = args.retry_messages or args.messages or DEFAULT_MESSAGES
    runs: int = args.runs or DEFAULT_RUNS
    cases = tuple(case.strip() for case in args.retry_cases.split(",") if case.strip())
    if not cases or any(case not in CASES for case in cases):
        raise SystemExit(f"--retry-cases: choose among {', '.join(CASES)} (got {args.retry_cases!r})")
    rabbit = "not used"
    if "rabbit" in cases:
        rabbit = rabbit_data.describe_server(args.rabbit_url)

    def build(broker: KafkaBroker) -> tuple[Suite, str]:
        suite = Suite(
            name=NAME,
            benchmark=NAME,
            cases=cases,
            baseline=cases[0],
            target=None,
            runs=runs,
            parameters={
                "messages": messages,
                "runs": runs,
                "rate_per_s": args.retry_rate,
                "retry": {"attempts": 2, "mode": "non-blocking", "delay_s": args.retry_delay, "jitter": 0.0},
                "partitions": args.partitions,
                "rabbit": rabbit,
                "lateness": "handler start of the second attempt - due time (ms); due from the headers",
                "target": f"median p99 lateness <= {TARGET_P99_MS:.0f} ms; never early (min >= -1 ms)",
            },
            measure_case=lambda case: measure_case(broker, case, args, messages),
            describe_run=progress,
        )
        headline = (
            f"retry lateness: {messages:,} orders per run published at {args.retry_rate:g}/s, each failing "
            f"once and retried after {args.retry_delay:g} s (non-blocking); {runs} runs per case, "
            f"interleaved: {', '.join(cases)}; RabbitMQ: {rabbit}"
        )
        return suite, headline

    return on_broker(build, results, finish)
