"""The PostgreSQL transactional mode behind real listeners: the key commits with the handler's rows."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest

from listeners import Message, StoreTransaction, kafka_listener, rabbit_listener
from listeners.exceptions import StartupError
from listeners.testing import running
from tests.contract.configs import unique
from tests.support.apps import app_with

pytestmark = pytest.mark.postgres

TRANSACTIONAL = {"store": "postgres", "transactional": True}
QUICK_RETRY = {"attempts": 3, "backoff": {"delay": 0.05, "multiplier": 1.0, "jitter": 0}}


@pytest.fixture
async def tables(postgres: str) -> AsyncIterator[tuple[str, str]]:
    """A business table ``charges`` and the store's key table, both dropped afterwards."""
    suffix = uuid.uuid4().hex[:10]
    charges, keys = f"charges_{suffix}", f"listeners_idem_tx_{suffix}"
    connection = await asyncpg.connect(postgres)
    try:
        await connection.execute(f"CREATE TABLE {charges} (payment_id text, attempt int)")
        yield charges, keys
    finally:
        await connection.execute(f"DROP TABLE IF EXISTS {charges}; DROP TABLE IF EXISTS {keys}")
        await connection.close()


def settings(postgres: str, keys: str, **extra: Any) -> dict[str, Any]:
    return {
        "listeners.idempotency.postgres.dsn": postgres,
        "listeners.idempotency.postgres.table": keys,
        **extra,
    }


async def rows(postgres: str, table: str) -> list[tuple[Any, ...]]:
    connection = await asyncpg.connect(postgres)
    try:
        return [tuple(row) for row in await connection.fetch(f"SELECT * FROM {table} ORDER BY 1, 2")]
    finally:
        await connection.close()


async def test_the_handlers_rows_and_the_key_commit_together_once(
    postgres: str, tables: tuple[str, str]
) -> None:
    charges, keys = tables
    topic = unique("tx")

    class Charger:
        @kafka_listener(topic, id="charger", idempotency_key="id", idempotency=TRANSACTIONAL)
        async def charge(self, payment: dict[str, str], db: StoreTransaction, message: Message) -> None:
            await db.connection.execute(
                f"INSERT INTO {charges} VALUES ($1, $2)", payment["id"], message.attempt
            )

    async with running(app_with(Charger()), overrides=settings(postgres, keys)) as app:
        for payment_id in ("a", "a", "b"):
            await app.kafka.send(topic, {"id": payment_id}, key=payment_id)
        await app.wait_for(lambda: app.stats("charger").duplicates_skipped == 1, timeout=10)
        await app.wait_for(lambda: app.stats("charger").processed == 2, timeout=10)
    assert await rows(postgres, charges) == [("a", 1), ("b", 1)]
    assert sorted(row[1] for row in await rows(postgres, keys)) == ["a", "b"]


async def test_a_failing_handler_rolls_its_rows_and_the_key_back(
    postgres: str, tables: tuple[str, str]
) -> None:
    charges, keys = tables
    topic = unique("tx-fail")

    class Charger:
        @kafka_listener(
            topic, id="charger", idempotency_key="id", idempotency=TRANSACTIONAL, retry=QUICK_RETRY
        )
        async def charge(self, payment: dict[str, str], db: StoreTransaction, message: Message) -> None:
            await db.connection.execute(
                f"INSERT INTO {charges} VALUES ($1, $2)", payment["id"], message.attempt
            )
            if message.attempt == 1:
                raise ConnectionError("the payment provider hung up after our write")

    async with running(app_with(Charger()), overrides=settings(postgres, keys)) as app:
        await app.kafka.send(topic, {"id": "c"})
        await app.wait_for(lambda: app.stats("charger").processed == 1, timeout=10)
        assert app.stats("charger").retried == 1
    assert await rows(postgres, charges) == [("c", 2)], "attempt 1's row was rolled back with its key"


@pytest.mark.rabbit
async def test_concurrent_duplicates_on_two_consumers_write_once(
    postgres: str, rabbit: str, tables: tuple[str, str]
) -> None:
    charges, keys = tables
    queue = unique("tx-two")
    entered = asyncio.Event()

    class Charger:
        @rabbit_listener(
            queue, id="two", concurrency=2, prefetch=1, idempotency_key="id", idempotency=TRANSACTIONAL
        )
        async def charge(self, payment: dict[str, str], db: StoreTransaction) -> None:
            await db.connection.execute(f"INSERT INTO {charges} VALUES ($1, 1)", payment["id"])
            entered.set()
            await asyncio.sleep(0.5)  # the duplicate's transaction waits on the key's unique index meanwhile

    overrides = settings(postgres, keys, **{"listeners.rabbit.url": rabbit})
    async with running(app_with(Charger()), embedded=False, overrides=overrides) as app:
        await app.rabbit.publish("", queue, {"id": "d"})
        await app.rabbit.publish("", queue, {"id": "d"})
        stats = app.stats("two")
        await app.wait_for(lambda: (stats.processed, stats.duplicates_skipped) == (1, 1), timeout=20)
    assert await rows(postgres, charges) == [("d", 1)]


async def test_transactional_mode_needs_a_store_with_transactions_and_a_parameter(
    postgres: str, tables: tuple[str, str]
) -> None:
    _, keys = tables

    class OnMemory:
        @kafka_listener(unique("tx-mem"), id="mem", idempotency_key="id", idempotency={"transactional": True})
        async def charge(self, payment: dict[str, str], db: StoreTransaction) -> None: ...

    with pytest.raises(
        StartupError, match=r"listener mem: idempotency\.transactional needs a store with transactions"
    ):
        async with running(app_with(OnMemory())):
            pass

    class NoParameter:
        @kafka_listener(unique("tx-nop"), id="nop", idempotency_key="id", idempotency=TRANSACTIONAL)
        async def charge(self, payment: dict[str, str]) -> None: ...

    with pytest.raises(
        StartupError, match=r"listener nop: idempotency\.transactional needs an async handler"
    ):
        async with running(app_with(NoParameter()), overrides=settings(postgres, keys)):
            pass

    class NotTransactional:
        @kafka_listener(unique("tx-off"), id="off", idempotency_key="id")
        async def charge(self, payment: dict[str, str], db: StoreTransaction) -> None: ...

    with pytest.raises(StartupError, match="listener off: parameter 'db' takes the idempotency transaction"):
        async with running(app_with(NotTransactional())):
            pass
