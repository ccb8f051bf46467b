"""The idempotency suite: one Kafka listener with each idempotency store next to none, same data, one run.

Starts the broker once (as the Kafka suite does) and produces ONE topic (not measured) that every case
consumes from the start with a fresh consumer group. The cases are every store (``none``, ``memory``,
``sqlite``, ``redis``, ``postgres``) under ``ordering: partition`` (the Kafka default: one message at a
time per partition) and ``ordering: key`` (the records' 1000 keys in flight side by side, up to
``max_in_flight``: 256 unless ``--idempotency-max-in-flight``), interleaved, each run in its own
subprocess (``benchmarks.idempotency_consume``) with a fresh store: a new SQLite file, a new Redis key
prefix, a new PostgreSQL table. A run passes when its group committed every record, the listener
processed N messages and skipped none as duplicates, and the store holds N done keys (SQLite, Redis,
PostgreSQL); the keys, file and table are removed after the check.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sqlite3
import statistics
import tempfile
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from benchmarks import kafka_data, report
from benchmarks.idempotency_consume import LISTENER_ID, MAX_IN_FLIGHT, ORDERINGS, STORES
from benchmarks.kafka_suite import broker_description, consumer_options
from benchmarks.machine import PACKAGES, describe, machine_info
from benchmarks.suite import Measurement, Suite, Target, check, measure_all, run_process

if TYPE_CHECKING:
    from tests.support.brokers import KafkaBroker

NAME = "idempotency"
DEFAULT_MESSAGES = 20_000
DEFAULT_RUNS = 3
TARGET_RATIO = 0.5
"""The Redis store must reach this share of no store's msgs/s (under the same ordering)."""
IDEMPOTENCY_PACKAGES = (*PACKAGES, "redis", "aiosqlite", "asyncpg")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(
        "idempotency suite (also uses --partitions, --max-poll-records, --consumer-options)"
    )
    group.add_argument(
        "--idempotency-messages",
        type=int,
        help=f"records in the topic every case consumes (default {DEFAULT_MESSAGES}, or --messages)",
    )
    group.add_argument(
        "--stores", default=",".join(STORES), help=f"comma-separated (default {','.join(STORES)})"
    )
    group.add_argument(
        "--orderings", default=",".join(ORDERINGS), help=f"comma-separated (default {','.join(ORDERINGS)})"
    )
    group.add_argument(
        "--idempotency-max-in-flight",
        type=int,
        default=MAX_IN_FLIGHT,
        help=f"the listener's max_in_flight in every case (default {MAX_IN_FLIGHT}, listeners' default)",
    )
    group.add_argument(
        "--redis-url",
        default=os.environ.get("LISTENERS_TEST_REDIS_URL", "redis://127.0.0.1:6379/0"),
        help="default: LISTENERS_TEST_REDIS_URL or redis://127.0.0.1:6379/0",
    )
    group.add_argument(
        "--postgres-dsn",
        default=os.environ.get("LISTENERS_TEST_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/test"),
        help="default: LISTENERS_TEST_POSTGRES_DSN or postgresql://postgres@127.0.0.1:5432/test",
    )


def selected(value: str, allowed: tuple[str, ...], what: str) -> tuple[str, ...]:
    chosen = tuple(name.strip() for name in value.split(",") if name.strip())
    unknown = [name for name in chosen if name not in allowed]
    if unknown or not chosen:
        raise SystemExit(f"--{what}: choose among {', '.join(allowed)} (got {value!r})")
    return chosen


def case_name(store: str, ordering: str) -> str:
    return f"{store}/{ordering}"


class Cleanup:
    """Counts the done keys a run left in its store, then removes them (file, key prefix, table)."""

    def __init__(self, args: argparse.Namespace, workdir: Path) -> None:
        self._args = args
        self._workdir = workdir

    def locations(self, store: str) -> dict[str, str]:
        """A fresh place for one run's keys, as ``benchmarks.idempotency_consume`` options."""
        suffix = uuid.uuid4().hex[:12]
        if store == "sqlite":
            return {"--sqlite-path": str(self._workdir / f"keys-{suffix}.db")}
        if store == "redis":
            return {"--redis-url": self._args.redis_url, "--redis-prefix": f"listeners-bench:{suffix}:"}
        if store == "postgres":
            return {
                "--postgres-dsn": self._args.postgres_dsn,
                "--postgres-table": f"listeners_bench_{suffix}",
            }
        return {}

    def done_keys(self, store: str, where: dict[str, str]) -> int | None:
        """How many done keys the store holds (None for stores the driver cannot see); removes them all."""
        if store == "sqlite":
            return _sqlite_done(Path(where["--sqlite-path"]))
        if store == "redis":
            return asyncio.run(_redis_done(where["--redis-url"], where["--redis-prefix"]))
        if store == "postgres":
            return asyncio.run(_postgres_done(where["--postgres-dsn"], where["--postgres-table"]))
        return None


def _sqlite_done(path: Path) -> int:
    try:
        connection = sqlite3.connect(path)
        try:
            (count,) = connection.execute(
                "SELECT count(*) FROM listeners_idempotency WHERE namespace = ? AND token IS NULL",
                (LISTENER_ID,),
            ).fetchone()
        finally:
            connection.close()
    finally:
        for leftover in path.parent.glob(f"{path.name}*"):  # the file and its -wal, -shm
            leftover.unlink(missing_ok=True)
    return int(count)


async def _redis_done(url: str, prefix: str) -> int:
    from redis.asyncio import Redis

    client = Redis.from_url(url, decode_responses=True)
    done = 0
    try:
        keys = [key async for key in client.scan_iter(match=f"{prefix}*", count=5000)]
        for start in range(0, len(keys), 1000):
            chunk = keys[start : start + 1000]
            done += sum(1 for value in await client.mget(chunk) if value == "done")
            await client.delete(*chunk)
    finally:
        await client.aclose()
    return done


async def _postgres_done(dsn: str, table: str) -> int:
    import asyncpg

    connection = await asyncpg.connect(dsn)
    try:
        count = await connection.fetchval(
            f'SELECT count(*) FROM "{table}" WHERE namespace = $1 AND token IS NULL', LISTENER_ID
        )
    finally:
        await connection.execute(f'DROP TABLE IF EXISTS "{table}"')
        await connection.close()
    return int(count)


def measure_case(
    broker: KafkaBroker,
    case: str,
    args: argparse.Namespace,
    messages: int,
    topic: str,
    ends: kafka_data.Ends,
    cleanup: Cleanup,
) -> Measurement:
    """Consume the prepared topic with a new group and a fresh store; check the commits and the keys."""
    store, ordering = case.split("/")
    group = f"{topic}-{store}-{ordering}-{uuid.uuid4().hex[:8]}"
    where = cleanup.locations(store)
    arguments = [
        "--store", store, "--ordering", ordering, "--messages", str(messages),
        "--bootstrap", broker.bootstrap, "--topic", topic, "--group", group,
        "--max-poll-records", str(args.max_poll_records),
        "--max-in-flight", str(args.idempotency_max_in_flight),
        "--consumer-options", json.dumps(consumer_options(broker, args)),
        "--timeout", str(args.timeout),
    ]  # fmt: skip
    for option, value in where.items():
        arguments += [option, value]
    try:
        measurement = run_process("benchmarks.idempotency_consume", arguments, args.timeout + 60)
        committed = asyncio.run(kafka_data.committed(broker.bootstrap, group, topic, ends))
    finally:
        done = cleanup.done_keys(store, where)
    stats = measurement["stats"]
    problems = []
    if committed != ends:
        problems.append(f"NOT ALL COMMITTED: {committed} of {ends}")
    if stats["processed"] != messages or stats["duplicates_skipped"]:
        problems.append(
            f"processed {stats['processed']}, skipped {stats['duplicates_skipped']} of {messages}"
        )
    if done is not None and done != messages:
        problems.append(f"{done} of {messages} keys done in the store")
    measurement["done_keys"] = done
    measurement["check"] = check(
        not problems,
        "; ".join(problems) or ("all committed" + (f", {done} keys done" if done is not None else "")),
    )
    return measurement


def verdicts(summaries: dict[str, report.CaseSummary]) -> list[dict[str, Any]]:
    """The target (redis >= 0.5x none) under each ordering measured."""
    found = []
    for ordering in ORDERINGS:
        case, baseline = case_name("redis", ordering), case_name("none", ordering)
        if case in summaries and baseline in summaries:
            found.append(Target(case, baseline, TARGET_RATIO).verdict(summaries))
    return found


def table(summaries: dict[str, report.CaseSummary], measurements: list[Measurement]) -> str:
    """A Markdown table; each case is compared with no store under the same ordering."""
    lines = [
        "| store | ordering | msgs/s per run | median msgs/s | vs none | CPU µs / msg | peak RSS MB |",
        "|---|---|---|---:|---:|---:|---:|",
    ]
    for summary in summaries.values():
        store, ordering = summary.case.split("/")
        baseline = case_name("none", ordering)
        versus = f"{report.ratio(summaries, summary.case, baseline):.2f}x" if baseline in summaries else "-"
        cpu = statistics.median(m["cpu_s_per_1000"] * 1000 for m in measurements if m["case"] == summary.case)
        runs = ", ".join(f"{rate:,.0f}" for rate in summary.msgs_per_s)
        lines.append(
            f"| {store} | {ordering} | {runs} | {summary.median_msgs_per_s:,.0f} | {versus} "
            f"| {cpu:.1f} | {summary.median_peak_rss_mb:.0f} |"
        )
    return "\n".join(lines)


def finish(
    suite: Suite, started: datetime, info: dict[str, Any], measurements: list[Measurement], results: Path
) -> bool:
    """Print the table and the verdicts, write the results file; False if a check failed."""
    summaries = report.summarise(measurements)
    targets = verdicts(summaries)
    checks_passed = all(measurement["check"]["passed"] for measurement in measurements)
    document = {
        "benchmark": suite.benchmark,
        "date": started.date().isoformat(),
        "started_at": started.isoformat(timespec="seconds"),
        "machine": info,
        "parameters": {
            **suite.parameters,
            "order": f"interleaved ({', '.join(suite.cases)}, ...), each run in its own subprocess",
        },
        "targets": targets,
        "checks_passed": checks_passed,
        "summary": summaries,
        "runs": measurements,
    }
    print()
    print(f"measured {started.date().isoformat()}; {info['cpu']}, {info['cores']} cores")
    print(table(summaries, measurements))
    print()
    for summary in summaries.values():
        print(f"{summary.case} settings: {summary.config}")
    for target in targets:
        verdict = "met" if target["met"] else "MISSED"
        print(
            f"target {target['case']} >= {target['min_ratio']}x {target['baseline']}: "
            f"{verdict} ({target['ratio']:.2f}x)"
        )
    if not checks_passed:
        failed = [m for m in measurements if not m["check"]["passed"]]
        print(f"CHECKS FAILED in {len(failed)} runs: " + "; ".join(m["check"]["detail"] for m in failed))
    output = results / f"{started.date().isoformat()}-{NAME}.json"
    report.write_json(output, document)
    print(f"results: {output}")
    return checks_passed


def run(args: argparse.Namespace, results: Path) -> bool:
    """Run the suite; False if a run's check failed."""
    from tests.support.brokers import kafka_broker

    messages: int = args.idempotency_messages or args.messages or DEFAULT_MESSAGES
    runs: int = args.runs or DEFAULT_RUNS
    stores = selected(args.stores, STORES, "stores")
    orderings = selected(args.orderings, ORDERINGS, "orderings")
    cases = tuple(case_name(store, ordering) for ordering in orderings for store in stores)
    started = datetime.now(UTC)
    with (
        tempfile.TemporaryDirectory(prefix="listeners-bench-") as workdir,
        kafka_broker(Path(workdir)) as broker,
    ):
        topic = f"bench-idempotency-{uuid.uuid4().hex[:10]}"
        ends = asyncio.run(kafka_data.prepare(broker.bootstrap, topic, args.partitions, messages))
        cleanup = Cleanup(args, Path(workdir))
        suite = Suite(
            name=NAME,
            benchmark="kafka-idempotency",
            cases=cases,
            baseline=cases[0],
            target=Target(case_name("redis", orderings[0]), case_name("none", orderings[0]), TARGET_RATIO),
            runs=runs,
            parameters={
                "messages": messages,
                "runs": runs,
                "partitions": args.partitions,
                "max_poll_records": args.max_poll_records,
                "max_in_flight": args.idempotency_max_in_flight,
                "idempotency_key": "order_id (distinct per record: every message claimed and completed)",
                "record_keys": "1000 distinct keys (ordering: key runs them side by side)",
                "data": "one topic produced before the first run; each run consumes it with a new group",
                "window": "first handled message to the N-th",
            },
            measure_case=lambda case: measure_case(broker, case, args, messages, topic, ends, cleanup),
        )
        info = machine_info(broker_description(broker), IDEMPOTENCY_PACKAGES)
        info["stores"] = {
            "sqlite": "a new file per run in a temporary directory",
            "redis": f"{args.redis_url} (a new key prefix per run, deleted after)",
            "postgres": f"{args.postgres_dsn} (a new table per run, dropped after)",
        }
        print("\n".join(describe(info)))
        print(
            f"idempotency: {messages:,} records over {args.partitions} partitions, {runs} runs per case, "
            f"interleaved: {', '.join(cases)}"
        )
        try:
            measurements = measure_all(suite)
        finally:
            asyncio.run(kafka_data.delete_topic(broker.bootstrap, topic))
    info["load_average_at_end"] = [round(load, 2) for load in os.getloadavg()]
    return finish(suite, started, info, measurements, results)
