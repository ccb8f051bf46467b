"""A Jepsen-style oracle: what was acknowledged to the producer against what the handlers did.

The producer side records every send the broker acknowledged (Kafka ``acks=all``, RabbitMQ publisher
confirms): a unique message id, a business key and the key's sequence number. The handler side (the
app in :mod:`tests.faults.apps.recorder`) records every invocation and every effect in PostgreSQL,
in tables of a schema unique to the test (``fault_<hex>``). :meth:`Oracle.check` compares them:

- ``lost``: acknowledged sends with no effect;
- ``duplicates``: effects beyond the first of each id (at-least-once allows them, idempotency not);
- ``order_violations``: per key, a message whose first effect came after the first effect of a later
  sequence number of the same key;
- ``dead_letters``: ids read from the dead-letter topic or queue;
- ``unknown``: effects of ids never acknowledged to the producer (should not exist).

Every checked scenario is registered in :data:`RESULTS`; ``tests/faults/conftest.py`` prints them as a
table at the end of the session.
"""

from __future__ import annotations

import json
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import aio_pika
import asyncpg
from aiokafka import AIOKafkaProducer

from tests.contract.configs import unique
from tests.support.kafka_tools import read_topic
from tests.support.rabbit_tools import take_all


@dataclass(frozen=True)
class Sent:
    id: str
    key: str
    seq: int
    headers: tuple[tuple[str, Any], ...] = field(default=(), kw_only=True)
    """Kafka: ``(name, bytes | None)``; RabbitMQ: ``(name, any AMQP table value)``."""

    def body(self) -> bytes:
        return json.dumps({"id": self.id, "key": self.key, "seq": self.seq}).encode()


MAX_SENT = 4 * 1024 * 1024
"""The largest message a scenario sends (bytes): beyond what listeners' own producer accepts by default."""


@dataclass
class OracleResult:
    scenario: str
    sent: int
    invocations: int
    effects: int
    lost: list[str]
    duplicates: int
    duplicated_ids: int
    order_violations: list[str]
    dead_letters: int
    unknown: int
    wall: float = 0.0

    def describe(self) -> str:
        lost = f"{len(self.lost)} {self.lost[:10]}" if self.lost else "0"
        order = f"{len(self.order_violations)} {self.order_violations[:5]}" if self.order_violations else "0"
        return (
            f"{self.scenario}: sent={self.sent} invocations={self.invocations} effects={self.effects} "
            f"lost={lost} duplicates={self.duplicates} (of {self.duplicated_ids} ids) "
            f"order_violations={order} "
            f"dead_letters={self.dead_letters} unknown={self.unknown}"
        )


def assert_sound(result: OracleResult, transport: str) -> None:
    """What holds in every crash and network scenario: nothing lost, nothing dead-lettered or made up,
    and on Kafka (``ordering: partition``, a key on one partition) first effects in key order."""
    assert result.lost == [], result.describe()
    assert result.effects >= result.sent, result.describe()
    assert result.dead_letters == 0, result.describe()
    assert result.unknown == 0, result.describe()
    if transport == "kafka":
        assert result.order_violations == [], result.describe()


RESULTS: dict[str, OracleResult] = {}
"""The last checked result of each scenario in this session, by scenario name."""


Queues = list[tuple[str, str]]
"""The ``queues`` fixture: ``(url, queue)`` to delete after the test."""


async def fault_queue(rabbit: str, queues: Queues, prefix: str = "fault", *tiers: str) -> str:
    """A new durable queue ``<prefix>-<hex>-q``, declared as its listener will declare it, registered
    with its dead-letter queue (and the ``tiers`` suffixes, e.g. ``.retry.200``) for deletion. Not named
    like the other tests' queues: see the queues fixture."""
    queue = unique(prefix) + "-q"
    queues += [(rabbit, queue), (rabbit, f"{queue}.dlq"), *((rabbit, f"{queue}{tier}") for tier in tiers)]
    connection = await aio_pika.connect(rabbit)
    try:
        await (await connection.channel()).declare_queue(queue, durable=True)
    finally:
        await connection.close()
    return queue


def events(keys: int, per_key: int) -> list[Sent]:
    """``per_key`` messages for each of ``keys`` keys, interleaved: k0-0, k1-0, ..., k0-1, ..."""
    return [Sent(f"k{key}-{seq}", f"k{key}", seq) for seq in range(per_key) for key in range(keys)]


class Oracle:
    """One scenario's sent log and PostgreSQL tables."""

    def __init__(self, dsn: str, scenario: str) -> None:
        self.dsn = dsn
        self.scenario = scenario
        self.schema = f"fault_{uuid.uuid4().hex[:12]}"
        self.sent: list[Sent] = []
        self.started = time.monotonic()

    def env(self) -> dict[str, str]:
        """What the app's recorder needs."""
        return {"FAULT_PG_DSN": self.dsn, "FAULT_PG_SCHEMA": self.schema}

    async def create(self) -> None:
        connection = await asyncpg.connect(self.dsn)
        try:
            await connection.execute(f"CREATE SCHEMA {self.schema}")
            for table in ("invocations", "effects"):
                await connection.execute(
                    f"CREATE TABLE {self.schema}.{table} (n bigserial PRIMARY KEY, id text NOT NULL, "
                    "key text NOT NULL, seq integer NOT NULL, pid integer NOT NULL, "
                    "at timestamptz NOT NULL DEFAULT clock_timestamp())"
                )
        finally:
            await connection.close()

    async def drop(self) -> None:
        connection = await asyncpg.connect(self.dsn)
        try:
            await connection.execute(f"DROP SCHEMA IF EXISTS {self.schema} CASCADE")
        finally:
            await connection.close()

    # producing ------------------------------------------------------------------------------------

    async def send_kafka(self, bootstrap: str, topic: str, messages: Iterable[Sent], partitions: int) -> None:
        """Send to ``topic``, a key always to the same partition (``k<n>`` to ``n % partitions``);
        only sends the broker acknowledged are recorded."""
        producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap, acks="all", enable_idempotence=False, max_request_size=MAX_SENT
        )
        await producer.start()
        try:
            pending = []
            for message in messages:
                partition = int(message.key[1:]) % partitions
                future = await producer.send(
                    topic, message.body(), key=message.key.encode(), partition=partition,
                    headers=list(message.headers) or None,
                )  # fmt: skip
                pending.append((message, future))
            for message, future in pending:
                await future
                self.sent.append(message)
        finally:
            await producer.stop()

    async def send_rabbit(self, url: str, queue: str, messages: Iterable[Sent]) -> None:
        """Publish to ``queue`` through the default exchange with confirms and ``mandatory``; only
        confirmed publishes are recorded."""
        connection = await aio_pika.connect(url)
        try:
            channel = await connection.channel(publisher_confirms=True)
            for message in messages:
                await channel.default_exchange.publish(
                    aio_pika.Message(message.body(), content_type="application/json",
                                     delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                                     headers=dict(message.headers) or None),
                    routing_key=queue, mandatory=True,
                )  # fmt: skip
                self.sent.append(message)
        finally:
            await connection.close()

    # reading what the handlers did -----------------------------------------------------------------

    async def rows(self, table: str, pid: int | None = None) -> list[asyncpg.Record]:
        """``invocations`` or ``effects`` in insertion order (of process ``pid``)."""
        assert table in ("invocations", "effects")
        connection = await asyncpg.connect(self.dsn)
        try:
            if pid is None:
                return await connection.fetch(
                    f"SELECT id, key, seq, pid FROM {self.schema}.{table} ORDER BY n"
                )
            return await connection.fetch(
                f"SELECT id, key, seq, pid FROM {self.schema}.{table} WHERE pid = $1 ORDER BY n", pid
            )
        finally:
            await connection.close()

    async def count(self, table: str, pid: int | None = None) -> int:
        return len(await self.rows(table, pid))

    async def effect_counts(self) -> Counter[str]:
        return Counter(row["id"] for row in await self.rows("effects"))

    async def all_effected(self) -> bool:
        """Whether every acknowledged send has an effect."""
        return {message.id for message in self.sent} <= set(await self.effect_counts())

    async def check(self, dead_letters: Iterable[str] = ()) -> OracleResult:
        """Compare and register the result under the scenario's name."""
        invocations = await self.rows("invocations")
        effects = await self.rows("effects")
        sent_ids = {message.id for message in self.sent}
        counts = Counter(row["id"] for row in effects)
        first_seqs: dict[str, list[tuple[int, str]]] = defaultdict(list)
        seen: set[str] = set()
        for row in effects:
            if row["id"] not in seen:
                seen.add(row["id"])
                first_seqs[row["key"]].append((row["seq"], row["id"]))
        violations = []
        for key, seqs in sorted(first_seqs.items()):
            highest = -1
            for seq, message_id in seqs:
                if seq < highest:
                    violations.append(f"{message_id} after {key}-{highest}")
                highest = max(highest, seq)
        result = OracleResult(
            scenario=self.scenario,
            sent=len(self.sent),
            invocations=len(invocations),
            effects=len(effects),
            lost=sorted(sent_ids - set(counts)),
            duplicates=sum(count - 1 for count in counts.values()),
            duplicated_ids=sum(1 for count in counts.values() if count > 1),
            order_violations=violations,
            dead_letters=len(list(dead_letters)),
            unknown=sum(1 for message_id in counts if message_id not in sent_ids),
            wall=time.monotonic() - self.started,
        )
        RESULTS[self.scenario] = result
        return result


async def kafka_dead_letters(bootstrap: str, topic: str) -> list[str]:
    """Message ids in ``<topic>-dlt``."""
    return [json.loads(record.value)["id"] for record in await read_topic(bootstrap, f"{topic}-dlt")]


async def rabbit_dead_letters(url: str, queue: str) -> list[str]:
    """Message ids in ``<queue>.dlq`` (taken off the queue)."""
    return [json.loads(message.body)["id"] for message in await take_all(url, f"{queue}.dlq")]


def summary_table(results: Iterable[OracleResult]) -> list[str]:
    header = ("scenario", "messages", "invocations", "effects", "lost", "duplicates", "order", "dead letters",
              "wall s")  # fmt: skip
    rows = [header] + [
        (r.scenario, str(r.sent), str(r.invocations), str(r.effects), str(len(r.lost)), str(r.duplicates),
         str(len(r.order_violations)), str(r.dead_letters), f"{r.wall:.1f}")
        for r in results
    ]  # fmt: skip
    widths = [max(len(row[column]) for row in rows) for column in range(len(header))]
    lines = []
    for index, row in enumerate(rows):
        cells = [row[0].ljust(widths[0])] + [
            cell.rjust(width) for cell, width in zip(row[1:], widths[1:], strict=False)
        ]
        lines.append("  ".join(cells))
        if index == 0:
            lines.append("  ".join("-" * width for width in widths))
    return lines
