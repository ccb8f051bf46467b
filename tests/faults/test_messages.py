"""Bad messages, duplicates and failing dependencies; the oracle checks what the brokers and handlers did.

The app (:mod:`tests.faults.apps.effects`) plans each message's fate in its payload (succeed, fail
transiently ``n`` times, fail for good, fail fatally, reject; poison payloads never validate) and
records invocations and effects in the oracle's tables. Every scenario ends with the worker stopped
gracefully and checks, from the database and the dead-letter topic or queue:

- ``lost``: acknowledged sends with neither an effect nor a dead letter (must be none);
- ``duplicates``: effects beyond the first of a message, or of a business key where the listener has an
  idempotency key (none here: no worker dies mid-message, and idempotency is on where keys repeat);
- the exact dead-letter set, each once, with Spring's diagnostic headers;
- the exact invocation count of each message (nothing loops).

Each scenario registers its row in the session's summary table (:data:`tests.faults.oracle.RESULTS`).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import re
import subprocess
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aio_pika
import asyncpg
import pytest

from listeners.rabbit.amqp import header_pairs_from_table
from tests.contract.configs import unique
from tests.faults.apps.effects import PRECLAIM_ENV, message_id
from tests.faults.barriers import Barrier, until
from tests.faults.oracle import RESULTS, Oracle, OracleResult, Queues, Sent, fault_queue
from tests.faults.proxy import FaultProxy
from tests.faults.workers import Worker, Workers
from tests.support.brokers import KafkaBroker
from tests.support.kafka_tools import read_topic
from tests.support.rabbit_tools import take_all
from tests.transports.kafka.helpers import committed, create_topic

pytestmark = [pytest.mark.fault, pytest.mark.postgres]

APP = "tests.faults.apps.effects"
PARTITIONS = 3
DONE_TIMEOUT = 60
STOP_TIMEOUT = 20
FAST_RETRY = {"delay": 0.2, "multiplier": 1.0, "jitter": 0.0}
FATAL = "tests.faults.apps.effects.Fatal"
TRANSIENT = "tests.faults.apps.effects.Transient"
REJECT = "listeners.exceptions.RejectMessage"
DECODE = "listeners.exceptions.MessageDecodeError"
TOO_LARGE = "listeners.exceptions.MessageTooLargeError"

HeaderList = list[tuple[str, bytes | None]]

TRANSPORTS = [
    pytest.param("kafka", marks=pytest.mark.kafka, id="kafka"),
    pytest.param("rabbit", marks=pytest.mark.rabbit, id="rabbit"),
]


# messages -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Msg(Sent):
    """A sent message with its plan (payload fields for the app), or a raw body (a poison message)."""

    plan: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)
    raw: bytes | None = None

    @property
    def business(self) -> str:
        return str(self.plan.get("business") or self.id)

    def body(self) -> bytes:
        if self.raw is not None:
            return self.raw
        return json.dumps({"id": self.id, "key": self.key, "seq": self.seq, **self.plan}).encode()


def msg(name: str, n: int, **plan: Any) -> Msg:
    """Message ``<name>-<n>`` on Kafka key ``k<n>`` (partition ``n % partitions``)."""
    return Msg(f"{name}-{n}", f"k{n}", n, plan=plan)


def poison(name: str, n: int, body: bytes) -> Msg:
    return Msg(f"{name}-{n}", f"k{n}", n, raw=body)


# dead letters ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DeadLetter:
    id: str | None
    body: bytes
    headers: tuple[tuple[str, bytes | None], ...]

    def header(self, name: str) -> bytes | None:
        """The last value of ``name``."""
        values = [value for key, value in self.headers if key == name]
        return values[-1] if values else None

    def text(self, name: str) -> str:
        value = self.header(name)
        return "" if value is None else value.decode(errors="replace")


class DeadLetters:
    """Reads a scenario's dead-letter topic, or takes its dead-letter queue (keeping what it took)."""

    def __init__(self, read: Callable[[], Awaitable[list[DeadLetter]]], *, accumulates: bool) -> None:
        self._read = read
        self._accumulates = accumulates
        self._taken: list[DeadLetter] = []

    async def all(self) -> list[DeadLetter]:
        found = await self._read()
        if not self._accumulates:
            return found
        self._taken += found
        return list(self._taken)

    async def wait(self, count: int, alive: Callable[[], Any] | None = None) -> list[DeadLetter]:
        seen: list[DeadLetter] = []

        async def enough() -> bool:
            nonlocal seen
            seen = await self.all()
            return len(seen) >= count

        await until(enough, DONE_TIMEOUT, f"{count} dead letter(s)", alive=alive)
        return seen


def kafka_dead_letters(bootstrap: str, topic: str) -> DeadLetters:
    async def read() -> list[DeadLetter]:
        records = await read_topic(bootstrap, topic)
        return [DeadLetter(message_id(r.value or b""), r.value or b"", tuple(r.headers)) for r in records]

    return DeadLetters(read, accumulates=False)


def rabbit_dead_letters(url: str, queue: str) -> DeadLetters:
    async def read() -> list[DeadLetter]:
        taken = await take_all(url, queue)
        return [
            DeadLetter(message_id(m.body), m.body, header_pairs_from_table(m.headers))  # type: ignore[arg-type]
            for m in taken
        ]

    return DeadLetters(read, accumulates=True)


# the oracle, per message or per business key -------------------------------------------------------


async def check(
    oracle: Oracle, dead: list[DeadLetter], *, by_key: bool = False, scenario: str | None = None
) -> OracleResult:
    """Compare sends, effects and dead letters, and register the result in the summary table.

    ``by_key``: count per business key (column ``key``) instead of per message id: a key is lost if no
    message of it had an effect or was dead-lettered, and duplicated if it had more than one effect.
    """
    invocations = await oracle.rows("invocations")
    effects = await oracle.rows("effects")
    column = "key" if by_key else "id"
    sent = {message.business if by_key else message.id for message in oracle.sent if isinstance(message, Msg)}
    by_id = {message.id: message for message in oracle.sent if isinstance(message, Msg)}
    dead_units = {
        (by_id[letter.id].business if by_key else letter.id) for letter in dead if letter.id in by_id
    }
    counts = Counter(row[column] for row in effects)
    result = OracleResult(
        scenario=scenario or oracle.scenario,
        sent=len(oracle.sent),
        invocations=len(invocations),
        effects=len(effects),
        lost=sorted(sent - set(counts) - dead_units),
        duplicates=sum(count - 1 for count in counts.values()),
        duplicated_ids=sum(1 for count in counts.values() if count > 1),
        order_violations=[],
        dead_letters=len(dead),
        unknown=sum(1 for unit in counts if unit not in sent)
        + sum(1 for letter in dead if letter.id not in by_id),
        wall=time.monotonic() - oracle.started,
    )
    RESULTS[result.scenario] = result
    print(result.describe())
    return result


def assert_sound(result: OracleResult) -> None:
    """Nothing lost, nothing made up, nothing done twice."""
    assert result.lost == [], result.describe()
    assert result.unknown == 0, result.describe()
    assert result.duplicates == 0, result.describe()


async def invocation_counts(oracle: Oracle) -> Counter[str]:
    return Counter(row["id"] for row in await oracle.rows("invocations"))


# workers ---------------------------------------------------------------------------------------------


SUMMARY = re.compile(r"listener (\S+) stopped: (.*)$", re.MULTILINE)


def stop_summary(worker: Worker, listener: str) -> dict[str, int]:
    """The counters of ``listener`` from the worker's stop line."""
    for found in SUMMARY.finditer(worker.output()):
        if found.group(1) == listener:
            return {name: int(value) for name, value in re.findall(r"(\w+)=(\d+)", found.group(2))}
    raise AssertionError(f"no stop summary of {listener}; log:\n{worker.tail()}")


async def running(worker: Worker) -> None:
    await until(lambda: worker.logged("listener(s) running"), DONE_TIMEOUT, f"{worker.name} to run",
                alive=worker.check_running)  # fmt: skip


async def stop(worker: Worker) -> None:
    """Stop gracefully once running (a SIGTERM before the app installed its handler ends it by the signal)."""
    await running(worker)
    worker.terminate()
    assert worker.wait(STOP_TIMEOUT) == 0, worker.tail()


def settle_lines(worker: Worker) -> list[str]:
    return [line for line in worker.output().splitlines() if "could not settle" in line]


def log_time(line: str) -> float:
    """Seconds of the day of a text-format log line (``2026-11-26 23:01:02,345 ...``)."""
    stamp = line.split()[1]
    hours, minutes, seconds = stamp.replace(",", ".").split(":")
    return int(hours) * 3600 + int(minutes) * 60 + float(seconds)


# transports ------------------------------------------------------------------------------------------


@dataclass
class Setup:
    """One scenario's transport: where messages go, the workers' env, how to send and read dead letters."""

    transport: str
    source: str
    env: dict[str, str]
    send: Callable[[Iterable[Msg]], Awaitable[None]]
    dead_letters: DeadLetters
    workers: Workers
    target: str = ""
    listener: str = ""
    group: str = ""
    settled: Callable[[], Awaitable[bool]] | None = None
    """Whether every sent message was settled (Kafka: committed; RabbitMQ: acknowledged)."""

    def start(self, name: str | None = None, **extra: str) -> Worker:
        return self.workers.start(self.target, {**self.env, **extra}, name=name)

    def option(self, name: str, value: Any) -> dict[str, str]:
        """The env var of listener option ``name`` (``retry__attempts``) set to ``value``."""
        text = value if isinstance(value, str) else json.dumps(value)
        return {f"LISTENERS__LISTENER__{self.listener.upper()}__{name.upper()}": text}


async def kafka_setup(
    kafka: KafkaBroker, oracle: Oracle, workers: Workers, flavour: str = "", partitions: int = PARTITIONS
) -> Setup:
    topic = unique("fault-msg")
    await create_topic(kafka, topic, partitions)
    listener = f"effects_kafka{flavour}"
    setup = Setup(
        transport="kafka",
        source=topic,
        env={
            "LISTENERS__KAFKA__BOOTSTRAP_SERVERS": kafka.bootstrap,
            "LISTENERS__KAFKA__CONSUMER": json.dumps(kafka.consumer),
            "LISTENERS__KAFKA__COMMIT_INTERVAL": "100ms",
            **oracle.env(),
        },
        send=lambda messages: oracle.send_kafka(kafka.bootstrap, topic, messages, partitions),
        dead_letters=kafka_dead_letters(kafka.bootstrap, f"{topic}-dlt"),
        workers=workers,
        target=f"{APP}:kafka{flavour}_container",
        listener=listener,
    )
    setup.group = unique("fault-msg-group")
    setup.env |= setup.option("topics", [topic]) | setup.option("group_id", setup.group)

    async def all_committed() -> bool:
        sent = Counter(int(message.key[1:]) % partitions for message in oracle.sent)
        positions = await committed(kafka, setup.group, topic)
        return all((positions.get(partition) or 0) >= count for partition, count in sent.items())

    setup.settled = all_committed
    return setup


async def rabbit_setup(
    rabbit: str, queues: Queues, oracle: Oracle, workers: Workers, flavour: str = ""
) -> Setup:
    queue = await fault_queue(rabbit, queues, "fault-msg", ".retry.200")
    listener = f"effects_rabbit{flavour}"
    setup = Setup(
        transport="rabbit",
        source=queue,
        env={"LISTENERS__RABBIT__URL": rabbit, **oracle.env()},
        send=lambda messages: oracle.send_rabbit(rabbit, queue, messages),
        dead_letters=rabbit_dead_letters(rabbit, f"{queue}.dlq"),
        workers=workers,
        target=f"{APP}:rabbit{flavour}_container",
        listener=listener,
    )
    setup.env |= setup.option("queue", queue)

    async def all_acknowledged() -> bool:
        return await rabbit_depth(queue) == (0, 0)

    setup.settled = all_acknowledged
    return setup


async def rabbit_depth(queue: str) -> tuple[int, int]:
    """``(ready, unacknowledged)`` messages of ``queue``, from ``rabbitmqctl``."""
    listed = await asyncio.to_thread(
        subprocess.run,
        ["rabbitmqctl", "-q", "list_queues", "name", "messages_ready", "messages_unacknowledged"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    for line in listed.stdout.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[0] == queue:
            return int(parts[1]), int(parts[2])
    raise AssertionError(f"no queue {queue} in rabbitmqctl list_queues")


async def wait_settled(setup: Setup, *alive: Worker) -> None:
    assert setup.settled is not None

    def check_alive() -> None:
        for worker in alive:
            worker.check_running()

    await until(setup.settled, DONE_TIMEOUT, "every message settled", alive=check_alive)


async def setup_for(
    transport: str, request: pytest.FixtureRequest, queues: Queues, oracle: Oracle, workers: Workers,
    flavour: str = "", partitions: int = PARTITIONS,
) -> Setup:  # fmt: skip
    if transport == "kafka":
        return await kafka_setup(request.getfixturevalue("kafka"), oracle, workers, flavour, partitions)
    return await rabbit_setup(request.getfixturevalue("rabbit"), queues, oracle, workers, flavour)


def check_dead_letter_headers(
    setup: Setup, letter: DeadLetter, fqcn: str, attempts: int, sent: Msg | None = None
) -> None:
    """Spring's diagnostic headers: Kafka ``kafka_dlt-*``, RabbitMQ ``x-exception-*`` / ``x-original-*``."""
    if setup.transport == "kafka":
        assert letter.text("kafka_dlt-original-topic") == setup.source, letter
        assert len(letter.header("kafka_dlt-original-partition") or b"") == 4
        assert len(letter.header("kafka_dlt-original-offset") or b"") == 8
        assert letter.text("kafka_dlt-exception-fqcn") == fqcn, letter
        assert letter.text("kafka_dlt-exception-stacktrace").startswith("Traceback (most recent call last):")
        assert letter.text("kafka_dlt-exception-message"), letter
        if sent is not None:
            partition = int(sent.key[1:]) % PARTITIONS
            assert letter.header("kafka_dlt-original-partition") == partition.to_bytes(4, "big")
    else:
        assert letter.text("x-exception-fqcn") == fqcn, letter
        assert letter.text("x-original-exchange") == "", letter
        assert letter.text("x-original-routingKey") == setup.source, letter
        assert letter.text("x-exception-stacktrace").startswith("Traceback (most recent call last):")
        assert letter.text("x-exception-message"), letter
        assert letter.text("retry-count") == str(attempts), letter


# 1. Transient, exhausted, fatal and poison messages in one stream ------------------------------------


@pytest.mark.parametrize("mode", ["blocking", "non-blocking"])
@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_a_mixed_stream_is_handled_retried_or_dead_lettered_exactly_as_planned(
    transport: str,
    mode: str,
    request: pytest.FixtureRequest,
    queues: Queues,
    oracle: Oracle,
    workers: Workers,
) -> None:
    attempts = 3
    setup = await setup_for(transport, request, queues, oracle, workers)
    setup.env |= setup.option("retry", {"attempts": attempts, "backoff": FAST_RETRY, "mode": mode,
                                        "not_retryable": [FATAL]})  # fmt: skip
    setup.env["LISTENERS__KAFKA__PROVISIONING__ENABLED"] = "true"  # the retry topics (and the DLT)
    ok = [msg("ok", n) for n in range(6)]
    flaky = [msg("flaky", n, fail=1) for n in range(6, 10)]
    doomed = [msg("doomed", n, fail=99) for n in range(10, 12)]
    fatal = [msg("fatal", n, fatal=True) for n in range(12, 14)]
    rejected = [msg("reject", 14, reject=True)]
    poisoned = [
        poison("poison", 15, json.dumps({"id": "poison-15", "key": "k15", "seq": "not a number"}).encode()),
        poison("poison", 16, b'{"id": "poison-16", "key": "k16", "seq": 16, "fail": '),
        poison("poison", 17, json.dumps({"id": "poison-17", "key": "k17"}).encode()),
    ]
    stream = [*ok, *flaky, *doomed, *fatal, *rejected, *poisoned]
    stream = sorted(stream, key=lambda message: message.seq * 7 % 18)  # interleaved, not grouped by fate
    await setup.send(stream)
    worker = setup.start()

    expected_dead = {m.id: fqcn for group, fqcn in ((doomed, TRANSIENT), (fatal, FATAL), (rejected, REJECT),
                                                    (poisoned, DECODE)) for m in group}  # fmt: skip

    async def handled() -> bool:
        return set(await oracle.effect_counts()) >= {m.id for m in ok + flaky}

    await until(handled, DONE_TIMEOUT, "the good and flaky messages handled", alive=worker.check_running)
    await setup.dead_letters.wait(len(expected_dead), alive=worker.check_running)
    await stop(worker)

    dead = await setup.dead_letters.all()
    result = await check(oracle, dead)
    assert_sound(result)
    assert Counter(letter.id for letter in dead) == Counter(set(expected_dead)), (
        "each dead letter exactly once"
    )
    by_id = {message.id: message for message in stream}
    for letter in dead:
        assert letter.id is not None
        made = attempts if letter.id.startswith("doomed") else 1
        check_dead_letter_headers(setup, letter, expected_dead[letter.id], made, by_id[letter.id])
        assert letter.body == by_id[letter.id].body(), "the original bytes"
    counts = await oracle.effect_counts()
    assert counts == Counter({m.id: 1 for m in ok + flaky}), (
        "handled once each, nothing dead-lettered had one"
    )
    invoked = await invocation_counts(oracle)
    expected_invocations = {m.id: 1 for m in ok + fatal + rejected} | {m.id: 2 for m in flaky}
    expected_invocations |= {m.id: attempts for m in doomed}
    assert invoked == Counter(expected_invocations), "retried as planned, no more: nothing loops"
    stats = stop_summary(worker, setup.listener)
    failed = len(flaky) + attempts * len(doomed) + len(fatal) + len(rejected) + len(poisoned)
    assert (stats["processed"], stats["failed"], stats["retried"], stats["dead_lettered"]) == (
        len(ok + flaky),
        failed,
        len(flaky) + (attempts - 1) * len(doomed),
        len(expected_dead),
    ), stats


# 2. Concurrent duplicates of a business key on two workers, idempotency in transactional mode ---------


ASSIGNED = re.compile(r"partitions (\S+) (assigned|revoked)")


def assignment(worker: Worker) -> set[str] | None:
    """The partitions a Kafka worker holds after its last rebalance event (None while revoked)."""
    events = ASSIGNED.findall(worker.output())
    if not events or events[-1][1] != "assigned" or events[-1][0] == "(none)":
        return None
    return set(events[-1][0].split(","))


async def waiting_on_keys(oracle: Oracle) -> int:
    """Store transactions blocked on a key another transaction holds (the key's unique index)."""
    connection = await asyncpg.connect(oracle.dsn)
    try:
        return int(
            await connection.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE $1",
                f'%"{oracle.schema}"."idem"%',
            )
        )
    finally:
        await connection.close()


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_concurrent_duplicates_on_two_workers_have_one_effect_per_key_even_after_a_rollback(
    transport: str,
    request: pytest.FixtureRequest,
    queues: Queues,
    oracle: Oracle,
    barrier: Barrier,
    workers: Workers,
    tmp_path: Path,
) -> None:
    # Each business key is sent twice (two message ids) and each copy goes to another worker: Kafka, one
    # copy per partition of a 2-partition topic (a worker each); RabbitMQ, the first copies fill the first
    # worker's prefetch before the second starts. Both copies wait before their claim (the pre-claim
    # barrier) and are let go together; the winner is then held inside its transaction while the loser
    # waits on the key's unique index. Half the keys fail their first invocation after writing the
    # effect in the transaction (rolled back): the loser then runs, and the winner's retry is skipped.
    keys, failing = 8, 4
    preclaim = Barrier(tmp_path / "preclaim")
    setup = await setup_for(transport, request, queues, oracle, workers, flavour="_tx", partitions=2)
    setup.env |= {
        **barrier.env(),
        PRECLAIM_ENV: str(preclaim.directory),
        "LISTENERS__IDEMPOTENCY__POSTGRES__DSN": oracle.dsn,
        "LISTENERS__IDEMPOTENCY__POSTGRES__TABLE": f"{oracle.schema}.idem",
        "LISTENERS__IDEMPOTENCY__POSTGRES__TIMEOUT": "20",  # the loser's claim waits this long on the index
    }
    setup.env |= setup.option("retry", {"attempts": 3, "backoff": FAST_RETRY})
    setup.env |= setup.option("ordering", "key" if transport == "kafka" else "none")  # keys side by side
    first = [Msg(f"a-{i}", f"k{2 * i}", i, plan={"business": f"b{i}", "fail": int(i < failing)})
             for i in range(keys)]  # fmt: skip
    second = [Msg(f"b-{i}", f"k{2 * i + 1}", i, plan={"business": f"b{i}", "fail": int(i < failing)})
              for i in range(keys)]  # fmt: skip
    ids = [message.id for message in first + second]
    preclaim.hold(ids=ids)
    barrier.hold(ids=ids)

    def alive() -> None:
        for worker in started:
            worker.check_running()

    if transport == "kafka":
        started = [setup.start(), setup.start()]
        both = {f"{setup.source}[0]", f"{setup.source}[1]"}

        def split() -> bool:
            held = [assignment(worker) for worker in started]
            return all(h is not None and len(h) == 1 for h in held) and set().union(*held) == both  # type: ignore[arg-type]

        await until(split, DONE_TIMEOUT, "one partition per worker", alive=alive)
        await setup.send(first + second)
    else:
        setup.env |= setup.option("prefetch", keys)
        started = [setup.start()]
        await setup.send(first)
        await preclaim.wait_held(keys, pid=started[0].pid, alive=alive)
        started.append(setup.start())
        await running(started[1])
        await setup.send(second)
    await preclaim.wait_held(2 * keys, alive=alive)
    for worker, copies in zip(started, (first, second), strict=True):
        assert set(preclaim.held(worker.pid)) == {m.id for m in copies} or transport == "kafka"
    holders = {held: pid for pid in (w.pid for w in started) for held in preclaim.held(pid)}
    assert all(holders[a.id] != holders[b.id] for a, b in zip(first, second, strict=True)), holders

    preclaim.release()  # both copies of every key claim at once
    winners = await barrier.wait_held(keys, alive=alive)
    assert len({message.removeprefix("a-").removeprefix("b-") for message in winners}) == keys, winners

    async def losers_wait() -> bool:
        return await waiting_on_keys(oracle) == keys

    await until(losers_wait, DONE_TIMEOUT, "each loser blocked on its key", alive=alive)
    assert await oracle.count("invocations") == keys, "no loser entered its handler"
    assert await oracle.count("effects") == 0, "nothing committed while the winners are held"
    barrier.release()

    await wait_settled(setup, *started)
    for worker in started:
        await stop(worker)
    result = await check(oracle, [], by_key=True)
    assert_sound(result)
    counts = Counter(row["key"] for row in await oracle.rows("effects"))
    assert counts == Counter({f"b{i}": 1 for i in range(keys)}), "exactly one effect per business key"
    invoked = Counter(row["key"] for row in await oracle.rows("invocations"))
    assert invoked == Counter({f"b{i}": 1 + int(i < failing) for i in range(keys)}), (
        "a loser ran only after its winner rolled back; a winner's retry found the key done"
    )
    totals = Counter[str]()
    for worker in started:
        totals.update(stop_summary(worker, setup.listener))
    assert (totals["processed"], totals["duplicates_skipped"], totals["failed"], totals["dead_lettered"]) == (
        keys,
        keys,
        failing,
        0,
    ), totals


# 3. The idempotency store down: fail closed ------------------------------------------------------------


def store_failures(worker: Worker) -> int:
    return worker.output().count("idempotency store failed")


def pairs(phase: str, keys: Iterable[int]) -> list[Msg]:
    """Each business key ``b<n>`` twice: ``<phase>-a-<n>`` and ``<phase>-b-<n>`` (other Kafka keys)."""
    return [
        Msg(f"{phase}-{copy}-{n}", f"k{2 * n + offset}", n, plan={"business": f"b{n}"})
        for n in keys
        for offset, copy in enumerate("ab")
    ]


@pytest.mark.redis
@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_an_unreachable_idempotency_store_stops_consumption_until_it_is_back(
    transport: str, request: pytest.FixtureRequest, queues: Queues, oracle: Oracle, workers: Workers
) -> None:
    # The Redis store is reached through a FaultProxy. While it refuses connections, then while it
    # stalls them (connected, nothing answers), no handler runs and nothing is acknowledged or
    # committed (fail_closed); once it passes again everything is handled, one effect per business key.
    # Every key is sent twice, and some again later: duplicates are skipped, never handled twice.
    redis_url: str = request.getfixturevalue("redis")
    host, _, rest = redis_url.removeprefix("redis://").partition(":")
    port, _, db = rest.partition("/")
    setup = await setup_for(transport, request, queues, oracle, workers, flavour="_keyed")
    with FaultProxy(host, int(port)) as proxy:
        setup.env |= {
            "LISTENERS__IDEMPOTENCY__REDIS__URL": f"redis://{proxy.address}/{db or 0}",
            "LISTENERS__IDEMPOTENCY__REDIS__PREFIX": f"{oracle.schema}:",
            "LISTENERS__IDEMPOTENCY__REDIS__TIMEOUT": "1",
        }
        # A short lease: a claim the stall delivered after its caller gave up holds its key only that long.
        setup.env |= setup.option("idempotency", {"store": "redis", "lease": "3s", "ttl": "10m"})
        if transport == "rabbit":
            setup.env |= setup.option("prefetch", 40)
        worker = setup.start()

        async def all_keys_handled() -> bool:
            return {row["key"] for row in await oracle.rows("effects")} >= {m.business for m in oracle.sent}

        async def handled_and_settled() -> bool:
            assert setup.settled is not None
            return await all_keys_handled() and await setup.settled()

        await setup.send(pairs("up", range(6)))
        await until(handled_and_settled, DONE_TIMEOUT, "the first keys handled", alive=worker.check_running)
        invoked = await oracle.count("invocations")
        settled = len(oracle.sent)
        outage = time.monotonic()
        positions = await committed(request.getfixturevalue("kafka"), setup.group, setup.source) \
            if transport == "kafka" else {}  # fmt: skip

        for fault in (proxy.refuse, proxy.stall):
            fault()
            proxy.reset_all()
            failures = store_failures(worker)
            first_key = 6 + 6 * (fault == proxy.stall)
            await setup.send([*pairs(fault.__name__, range(first_key, first_key + 6)),
                              Msg(f"{fault.__name__}-late-0", "k0", 0, plan={"business": "b0"})])  # fmt: skip
            await until(lambda f=failures: store_failures(worker) >= f + 3, DONE_TIMEOUT,  # type: ignore[misc]
                        "messages waiting for the store", alive=worker.check_running)  # fmt: skip
            assert await oracle.count("invocations") == invoked, (
                f"a handler ran while the store was down ({fault.__name__})"
            )
            if transport == "kafka":
                now = await committed(request.getfixturevalue("kafka"), setup.group, setup.source)
                assert now == positions, "nothing committed while the store is down"
            else:
                ready, unacked = await rabbit_depth(setup.source)
                assert ready + unacked == len(oracle.sent) - settled, (
                    "nothing acknowledged while the store is down"
                )
        down = store_failures(worker)
        proxy.pass_through()
        back = time.monotonic()
        await until(handled_and_settled, DONE_TIMEOUT, "everything handled once the store is back",
                    alive=worker.check_running)  # fmt: skip
        caught_up, lasted = time.monotonic() - back, back - outage
        print(
            f"{transport}: store down {lasted:.1f}s, {down} store failures logged; "
            f"caught up {caught_up:.1f}s after it came back"
        )
        await stop(worker)

    result = await check(oracle, [], by_key=True)
    assert_sound(result)
    invoked_by_key = Counter(row["key"] for row in await oracle.rows("invocations"))
    assert invoked_by_key == Counter({m.business: 1 for m in oracle.sent if isinstance(m, Msg)}), (
        "every key handled once, no duplicate ran"
    )
    stats = stop_summary(worker, setup.listener)
    assert stats["processed"] == len(invoked_by_key), stats
    assert stats["duplicates_skipped"] == len(oracle.sent) - len(invoked_by_key), stats
    assert stats["store_errors"] >= 6, stats
    # Each waiting message backs off from 0.5 s, doubling per failure of its own: after an outage of
    # ``lasted`` seconds none waits much longer than that once the store is back.
    assert caught_up <= 2 * lasted + 2, (
        f"caught up {caught_up:.1f}s after the store came back from a {lasted:.1f}s outage: the back-off "
        "grew with the number of messages waiting, not with the outage"
    )


# 4. The dead-letter destination unavailable ------------------------------------------------------------


SETTLE_DELAYS = (0.5, 1.0, 2.0)
"""The first waits between attempts of a failing settle (0.5 s doubling, jitter 10%)."""


def assert_backs_off(lines: list[str]) -> None:
    """Consecutive settle attempts of one message are at least the back-off apart: no spin."""
    times = [log_time(line) for line in lines]
    gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
    for gap, delay in zip(gaps, SETTLE_DELAYS, strict=False):
        assert gap >= 0.85 * delay, (
            f"settle attempts {gaps} apart, not backing off {SETTLE_DELAYS}:\n" + "\n".join(lines)
        )


@pytest.mark.rabbit
async def test_rabbit_a_missing_dead_letter_queue_keeps_the_message_until_it_is_back_then_dead_letters_once(
    request: pytest.FixtureRequest, queues: Queues, oracle: Oracle, workers: Workers
) -> None:
    # The listener declared its .dlq at startup; it is deleted under it. A publish to it through the
    # default exchange routes nowhere and, being mandatory, comes back: the settle fails, the message
    # stays unacknowledged and is tried again after a back-off, while the other messages flow. Once the
    # queue is declared again the next attempt dead-letters it, exactly once, without running the
    # handler again.
    setup = await setup_for("rabbit", request, queues, oracle, workers)
    setup.env |= setup.option("retry", {"attempts": 1}) | setup.option("retry__not_retryable", [FATAL])
    setup.env |= setup.option("prefetch", 4)  # finished messages behind the stuck one are acked one by one
    worker = setup.start()
    await running(worker)
    dlq = f"{setup.source}.dlq"
    connection = await aio_pika.connect(request.getfixturevalue("rabbit"))
    try:
        channel = await connection.channel()
        await channel.queue_delete(dlq)
        doomed = msg("fatal", 0, fatal=True)
        ok = [msg("ok", n) for n in range(1, 9)]
        await setup.send([doomed, *ok])

        async def others_handled() -> bool:
            return set(await oracle.effect_counts()) == {m.id for m in ok}

        await until(others_handled, DONE_TIMEOUT, "the other messages handled", alive=worker.check_running)
        await until(lambda: len(settle_lines(worker)) >= 4, DONE_TIMEOUT, "four settle attempts",
                    alive=worker.check_running)  # fmt: skip
        assert_backs_off(settle_lines(worker))
        assert "UnroutableError" in settle_lines(worker)[0], settle_lines(worker)[0]
        assert await rabbit_depth(setup.source) == (0, 1), "the doomed message stays unacknowledged"
        attempts = len(settle_lines(worker))
        await channel.declare_queue(dlq, durable=True)  # as the listener declares it
    finally:
        await connection.close()
    [letter] = await setup.dead_letters.wait(1, alive=worker.check_running)
    await until(setup.settled, DONE_TIMEOUT, "the doomed message acknowledged", alive=worker.check_running)  # type: ignore[arg-type]
    await stop(worker)

    dead = await setup.dead_letters.all()
    result = await check(oracle, dead)
    assert_sound(result)
    assert [d.id for d in dead] == [doomed.id], "dead-lettered exactly once"
    check_dead_letter_headers(setup, letter, FATAL, 1)
    assert (await invocation_counts(oracle))[doomed.id] == 1, (
        "a failing settle does not run the handler again"
    )
    assert len(settle_lines(worker)) <= attempts + 1, "tried again once the queue was back, then done"
    stats = stop_summary(worker, setup.listener)
    assert (stats["processed"], stats["dead_lettered"]) == (len(ok), 1), stats


@pytest.mark.kafka
async def test_kafka_an_unwritable_dead_letter_topic_keeps_the_record_uncommitted_then_dead_letters_once(
    request: pytest.FixtureRequest, queues: Queues, oracle: Oracle, workers: Workers
) -> None:
    # Tansu creates any topic a client asks metadata for (no switch to turn that off), and a FaultProxy
    # cannot sit between the producer alone and the broker (Kafka clients connect to the address the
    # broker advertises), so the dead-letter topic is made unwritable by configuring one the broker
    # refuses: a name Kafka does not allow (provisioning off: nothing creates it). The failing record's
    # settle fails and is retried with a back-off; its partition waits behind it, uncommitted, while the
    # other partitions flow. The worker stops gracefully without committing it, and the next worker,
    # configured with the default DLT, dead-letters it exactly once and handles what waited behind it.
    kafka: KafkaBroker = request.getfixturevalue("kafka")
    setup = await setup_for("kafka", request, queues, oracle, workers)
    setup.env |= setup.option("retry", {"attempts": 1}) | setup.option("retry__not_retryable", [FATAL])
    setup.env["LISTENERS__KAFKA__PRODUCER__OPTIONS"] = json.dumps({"request_timeout_ms": 500})
    doomed = msg("fatal", 0, fatal=True)
    behind = [msg("behind", n) for n in (3, 6)]  # partition 0, after the doomed record
    others = [msg("ok", n) for n in (1, 2, 4, 5, 7, 8)]  # partitions 1 and 2
    await setup.send([doomed, *behind, *others])
    first = setup.start(**setup.option("dead_letter__destination", f"{setup.source} dlt!"))

    async def others_handled() -> bool:
        return set(await oracle.effect_counts()) == {m.id for m in others}

    await until(others_handled, DONE_TIMEOUT, "the other partitions handled", alive=first.check_running)
    await until(lambda: len(settle_lines(first)) >= 3, DONE_TIMEOUT, "three settle attempts",
                alive=first.check_running)  # fmt: skip
    assert_backs_off(settle_lines(first))
    assert (await oracle.effect_counts()).keys().isdisjoint(m.id for m in behind), (
        "partition 0 waits behind it"
    )
    positions = await committed(kafka, setup.group, setup.source)
    assert (positions[0] or 0) == 0, f"the doomed record (offset 0) stays uncommitted: {positions}"
    assert (positions[1], positions[2]) == (3, 3), f"the other partitions committed: {positions}"
    await stop(first)
    positions = await committed(kafka, setup.group, setup.source)
    assert (positions[0] or 0) == 0, f"the graceful stop did not commit it: {positions}"
    assert await setup.dead_letters.all() == []

    await create_topic(kafka, f"{setup.source}-dlt", PARTITIONS)
    second = setup.start()
    await setup.dead_letters.wait(1, alive=second.check_running)
    await wait_settled(setup, second)
    await stop(second)

    dead = await setup.dead_letters.all()
    result = await check(oracle, dead)
    assert_sound(result)
    assert [d.id for d in dead] == [doomed.id], "dead-lettered exactly once"
    check_dead_letter_headers(setup, dead[0], FATAL, 1, doomed)
    invoked = await invocation_counts(oracle)
    assert invoked[doomed.id] == 2, "run again by the next worker (at-least-once), not by the failing settle"
    assert invoked == Counter({doomed.id: 2} | {m.id: 1 for m in behind + others}), invoked
    assert stop_summary(first, setup.listener)["dead_lettered"] == 0
    assert stop_summary(second, setup.listener)["dead_lettered"] == 1


# 5. Malformed headers ---------------------------------------------------------------------------------


NOT_UTF8 = b"\xff\xfe\x80 not utf-8"


def kafka_malformed_headers() -> list[HeaderList]:
    """Header sets a foreign (or broken) producer may send on Kafka; one message each."""
    return [
        [("traceparent", b"not-a-traceparent")],
        [
            ("traceparent", b"00-zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz-zzzzzzzzzzzzzzzz-01"),
            ("tracestate", NOT_UTF8),
        ],
        [("traceparent", NOT_UTF8), ("baggage", NOT_UTF8)],
        [
            ("traceparent", b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
            ("traceparent", b"garbage"),
        ],
        [("x-text", NOT_UTF8), ("x-empty", b""), ("x-null", None)],
        [("x-dup", b"1"), ("x-dup", b"2"), ("x-dup", NOT_UTF8), ("ключ", "значение".encode())],
        [("retry_topic-attempts", b"abc"), ("retry_topic-backoff-timestamp", b"\xff" * 40)],
        [("retry_topic-attempts", (-7).to_bytes(4, "big", signed=True)), ("retry_topic-attempts", b"")],
        [("retry_topic-original-timestamp", b"\x00"), ("listeners-retry-started", b"yesterday")],
        [
            ("kafka_original-topic", NOT_UTF8),
            ("kafka_original-partition", b"x"),
            ("kafka_original-offset", b""),
        ],
        [("kafka_dlt-original-partition", b"\x01\x02"), ("kafka_dlt-exception-fqcn", NOT_UTF8)],
        [("kafka_offset", b"seven"), ("kafka_receivedTopic", NOT_UTF8), ("retry-count", b"-1")],
        [("x-big", b"h" * 100_000)],
    ]


def rabbit_malformed_headers() -> list[list[tuple[str, Any]]]:
    """Header tables a foreign (or broken) publisher may send on RabbitMQ; one message each. AMQP tables
    cannot repeat a name, so repeated keys exist on Kafka only. ``NOT_UTF8`` goes as a byte array (pamqp
    encodes ``bytearray``, not ``bytes``)."""
    not_utf8 = bytearray(NOT_UTF8)
    return [
        [("traceparent", "not-a-traceparent")],
        [("traceparent", not_utf8), ("tracestate", not_utf8)],
        [("traceparent", 42), ("baggage", {"nested": [1, "two"]})],
        [("x-text", not_utf8), ("x-empty", ""), ("x-none", None), ("x-float", 1.5), ("x-bool", True)],
        [("retry-count", "abc"), ("x-original-exchange", not_utf8)],
        [("retry-count", -5), ("listeners-retry-started", "yesterday")],
        [("retry-count", not_utf8), ("x-original-routingKey", 7)],
        [("retry-count", [1, 2]), ("x-death", "not a list")],
        [("retry-count", 10**15), ("listeners-retry-started", not_utf8)],
        [("x-exception-message", not_utf8), ("x-exception-fqcn", {"a": 1})],
        [("x-big", "h" * 100_000)],
    ]


FRAMEWORK_HEADERS = (
    "retry_topic-",
    "kafka_",
    "listeners-retry",
    "retry-count",
    "x-death",
    "x-exception",
    "x-original",
)


def own_headers(headers: Iterable[tuple[str, Any]]) -> list[tuple[str, Any]]:
    """The headers the framework does not write itself on a retry or a dead letter."""
    return [(name, value) for name, value in headers if not name.startswith(FRAMEWORK_HEADERS)]


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_malformed_headers_never_crash_the_consumer_and_every_message_meets_its_fate(
    transport: str, request: pytest.FixtureRequest, queues: Queues, oracle: Oracle, workers: Workers
) -> None:
    # Each malformed header set goes on three messages: one handled at once, one failing once (its
    # retry republishes the headers), one failing for good (dead-lettered with them). Tracing is on, so
    # every traceparent is parsed. Retries are non-blocking: through the retry topics / tier queues.
    setup = await setup_for(transport, request, queues, oracle, workers)
    setup.env |= setup.option("retry", {"attempts": 2, "backoff": FAST_RETRY, "mode": "non-blocking"})
    setup.env |= {"LISTENERS__TRACING__ENABLED": "true", "LISTENERS__KAFKA__PROVISIONING__ENABLED": "true"}
    sets: list[Any] = kafka_malformed_headers() if transport == "kafka" else rabbit_malformed_headers()
    fates = {"ok": {}, "flaky": {"fail": 1}, "doomed": {"fail": 99}}
    stream = [
        Msg(f"{fate}-{index}", f"k{index}", index, plan=plan, headers=tuple(headers))
        for index, headers in enumerate(sets)
        for fate, plan in fates.items()
    ]
    await setup.send(stream)
    worker = setup.start()
    handled = {m.id for m in stream if not m.id.startswith("doomed")}
    doomed = [m for m in stream if m.id.startswith("doomed")]

    async def all_handled() -> bool:
        return set(await oracle.effect_counts()) >= handled

    await until(all_handled, DONE_TIMEOUT, "every message handled", alive=worker.check_running)
    await setup.dead_letters.wait(len(doomed), alive=worker.check_running)
    await wait_settled(setup, worker)
    await stop(worker)

    dead = await setup.dead_letters.all()
    result = await check(oracle, dead)
    assert_sound(result)
    assert Counter(d.id for d in dead) == Counter(m.id for m in doomed), "each doomed one dead-lettered once"
    assert await oracle.effect_counts() == Counter(dict.fromkeys(handled, 1))
    assert await invocation_counts(oracle) == Counter(
        {m.id: {"ok": 1, "flaky": 2, "doomed": 2}[m.id.partition("-")[0]] for m in stream}
    ), "every malformed header set read as a first delivery: its attempts as configured"
    by_id = {m.id: m for m in stream}
    for letter in dead:
        assert letter.id is not None
        check_dead_letter_headers(setup, letter, TRANSIENT, 2)
        sent = by_id[letter.id]
        if transport == "kafka":  # the original headers kept in order, byte for byte (None stays None)
            assert own_headers(letter.headers) == own_headers(sent.headers), (letter.headers, sent.headers)
        else:  # the byte arrays kept byte for byte
            for name, value in own_headers(sent.headers):
                if isinstance(value, bytearray):
                    assert letter.header(name) == bytes(value), (name, letter.headers)
    log = worker.output()
    assert "consumer failed" not in log, worker.tail()
    assert "pipeline error" not in log, worker.tail()
    stats = stop_summary(worker, setup.listener)
    assert (stats["processed"], stats["dead_lettered"]) == (len(handled), len(doomed)), stats


# 6. A forward over the producer's size limit ----------------------------------------------------------


@pytest.mark.kafka
@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_a_forward_over_the_size_limit_is_dead_lettered_at_once_and_the_rest_flows(
    transport: str, request: pytest.FixtureRequest, queues: Queues, oracle: Oracle, workers: Workers
) -> None:
    # The handler returns a value @send_to forwards to a Kafka topic, where a sink listener records the
    # effect. A value over the producer's max_request_size (1 MiB by default) fails the forward with
    # MessageTooLargeError, which is not retryable: the inbound message is dead-lettered after one
    # attempt (no retries, no loop) and nothing reaches the sink; a large value under the limit goes
    # through. RabbitMQ has no practical size limit here (128 MiB), so its listener forwards to Kafka too.
    kafka: KafkaBroker = request.getfixturevalue("kafka")
    setup = await setup_for(transport, request, queues, oracle, workers, flavour="_forward")
    forward = unique("fault-msg-forward")
    await create_topic(kafka, forward, PARTITIONS)
    setup.env |= {
        "FAULT_FORWARD_TOPIC": forward,
        "LISTENERS__KAFKA__PROVISIONING__ENABLED": "true",
        "LISTENERS__KAFKA__BOOTSTRAP_SERVERS": kafka.bootstrap,  # the RabbitMQ listener forwards to Kafka
        "LISTENERS__KAFKA__CONSUMER": json.dumps(kafka.consumer),
    }
    setup.env |= setup.option("retry", {"attempts": 3, "backoff": FAST_RETRY})
    setup.env |= {"LISTENERS__LISTENER__EFFECTS_SINK__GROUP_ID": unique("fault-msg-sink")}
    small = [msg("small", n) for n in range(4)]
    large = [msg("large", 4, big=512 * 1024)]
    huge = [msg("huge", n, big=2 * 1024 * 1024) for n in (5, 6)]
    await setup.send([*small, *large, *huge])
    worker = setup.start()

    async def forwarded() -> bool:
        return set(await oracle.effect_counts()) >= {m.id for m in small + large}

    await until(forwarded, DONE_TIMEOUT, "the forwards under the limit handled", alive=worker.check_running)
    await setup.dead_letters.wait(len(huge), alive=worker.check_running)
    await wait_settled(setup, worker)
    await stop(worker)

    dead = await setup.dead_letters.all()
    result = await check(oracle, dead)
    assert_sound(result)
    assert Counter(d.id for d in dead) == Counter(m.id for m in huge), "the oversized forwards, once each"
    for letter in dead:
        check_dead_letter_headers(setup, letter, TOO_LARGE, 1)
        assert "max_request_size" in letter.text(
            "kafka_dlt-exception-message" if transport == "kafka" else "x-exception-message"
        )
    assert await oracle.effect_counts() == Counter({m.id: 1 for m in small + large}), (
        "nothing huge reached the sink"
    )
    invocations = await invocation_counts(oracle)
    assert all(invocations[m.id] == 1 for m in huge), f"an oversized forward was retried: {invocations}"
    # A forward under the limit may meet a transient broker error (Tansu answers NotLeaderForPartition
    # for a topic this new, now and then) and be retried like any other: every extra run is one retry.
    extra_runs = sum(invocations[m.id] - 1 for m in small + large)
    assert all(invocations[m.id] >= 1 for m in small + large), invocations
    stats = stop_summary(worker, setup.listener)
    assert (stats["processed"], stats["failed"], stats["retried"], stats["dead_lettered"]) == (
        len(small + large),
        len(huge) + extra_runs,
        extra_runs,
        len(huge),
    ), stats
