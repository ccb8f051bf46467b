"""The PostgreSQL store against the local server: the store contract, table handling, errors, two
instances on one table, purging, and the transactional mode (business writes and the key commit or
roll back together). Each module run uses its own tables and drops them at the end."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Iterator

import asyncpg
import pytest
from pydantic import SecretStr

from listeners.exceptions import IdempotencyStoreError
from listeners.idempotency.config import PostgresStoreConfig
from listeners.idempotency.postgres import (
    PostgresIdempotencyStore,
    create_table_sql,
    describe_server,
)
from listeners.idempotency.store import ClaimState
from tests.idempotency.store_suite import LONG, SHORT, StoreSuite, namespace

pytestmark = pytest.mark.postgres

SUFFIX = uuid.uuid4().hex[:10]
TABLE = f"listeners_idem_{SUFFIX}"
ORDERS = f"listeners_idem_orders_{SUFFIX}"
SCHEMA = f"listeners_idem_schema_{SUFFIX}"


def config(dsn: str, table: str = TABLE, **fields: object) -> PostgresStoreConfig:
    return PostgresStoreConfig.model_validate({"dsn": SecretStr(dsn), "table": table, **fields})


async def fetch(dsn: str, query: str, *args: object) -> list[asyncpg.Record]:
    """Run one query on a connection of its own (not the store's pool)."""
    con = await asyncpg.connect(dsn)
    try:
        return await con.fetch(query, *args)
    finally:
        await con.close()


async def execute(dsn: str, script: str) -> None:
    """Run one or more statements on a connection of their own."""
    con = await asyncpg.connect(dsn)
    try:
        await con.execute(script)
    finally:
        await con.close()


@pytest.fixture(scope="module", autouse=True)
def tables(postgres: str) -> Iterator[None]:
    """The business table the transactional tests write to; every table of this module is dropped after."""
    asyncio.run(execute(postgres, f"CREATE TABLE {ORDERS} (id text PRIMARY KEY)"))
    yield
    asyncio.run(
        execute(
            postgres,
            f'DROP TABLE IF EXISTS "{TABLE}", "{TABLE}_other", "{TABLE}_purge", "{TABLE}_budget", {ORDERS};'
            f" DROP SCHEMA IF EXISTS {SCHEMA} CASCADE",
        )
    )


@pytest.fixture
async def store(postgres: str) -> AsyncIterator[PostgresIdempotencyStore]:
    store = PostgresIdempotencyStore(config(postgres))
    await store.start()
    yield store
    await store.close()


class TestPostgresStore(StoreSuite):
    pass


async def orders(dsn: str, order_id: str) -> int:
    rows = await fetch(dsn, f"SELECT count(*) FROM {ORDERS} WHERE id = $1", order_id)
    return int(rows[0][0])


# -- table, connection and errors ------------------------------------------------------------------


async def test_start_creates_the_table_with_its_primary_key_and_expiry_index(
    postgres: str, store: PostgresIdempotencyStore
) -> None:
    indexes = await fetch(postgres, "SELECT indexdef FROM pg_indexes WHERE tablename = $1", TABLE)
    definitions = " | ".join(row[0] for row in indexes)
    assert "(namespace, key)" in definitions
    assert "(expires_at)" in definitions


async def test_a_missing_table_fails_start_naming_it_when_create_table_is_off(postgres: str) -> None:
    missing = f"listeners_idem_missing_{SUFFIX}"
    store = PostgresIdempotencyStore(config(postgres, missing, create_table=False))
    with pytest.raises(IdempotencyStoreError) as caught:
        await store.start()
    message = str(caught.value)
    assert missing in message
    assert "create_table_sql" in message
    assert "127.0.0.1:5432/test" in message
    assert not await fetch(postgres, "SELECT 1 FROM pg_tables WHERE tablename = $1", missing), "not created"


async def test_an_existing_table_is_used_when_create_table_is_off(postgres: str) -> None:
    other = f"{TABLE}_other"
    await execute(postgres, create_table_sql(other))
    store = PostgresIdempotencyStore(config(postgres, other, create_table=False))
    await store.start()
    try:
        claim = await store.claim("l", "k", lease=LONG)
        assert claim.state is ClaimState.CLAIMED
        rows = await fetch(postgres, f'SELECT namespace, key, token FROM "{other}"')
        assert [tuple(row) for row in rows] == [("l", "k", claim.token)]
    finally:
        await store.close()


async def test_a_schema_qualified_table_is_created_in_its_schema(postgres: str) -> None:
    await execute(postgres, f"CREATE SCHEMA {SCHEMA}")
    store = PostgresIdempotencyStore(config(postgres, f"{SCHEMA}.keys"))
    await store.start()
    try:
        assert (await store.claim("l", "k", lease=LONG)).state is ClaimState.CLAIMED
        assert await fetch(postgres, f"SELECT 1 FROM {SCHEMA}.keys WHERE key = 'k'")
    finally:
        await store.close()


async def test_an_unreachable_server_fails_quickly_naming_host_and_port_but_not_the_password() -> None:
    store = PostgresIdempotencyStore(config("postgresql://postgres:s3cret@127.0.0.1:1/test", timeout=2))
    started = time.monotonic()
    with pytest.raises(IdempotencyStoreError) as caught:
        await store.start()
    assert time.monotonic() - started < 3
    assert "127.0.0.1:1/test" in str(caught.value)
    assert TABLE in str(caught.value)
    assert "s3cret" not in str(caught.value)


def test_the_server_is_described_without_credentials() -> None:
    assert describe_server("postgresql://u:pw@db.example:6543/app") == "db.example:6543/app"
    assert describe_server("postgresql://u@db.example/app") == "db.example:5432/app"
    assert describe_server("postgresql://u:pw@h") == "h:5432/u"


async def test_a_closed_store_raises_a_store_error(postgres: str) -> None:
    store = PostgresIdempotencyStore(config(postgres))
    await store.start()
    await store.close()
    with pytest.raises(IdempotencyStoreError, match=TABLE):
        await store.claim("l", "k", lease=LONG)


async def test_a_server_error_becomes_a_store_error_naming_server_and_table(postgres: str) -> None:
    doomed = f"{TABLE}_other"
    store = PostgresIdempotencyStore(config(postgres, doomed))
    await store.start()
    try:
        await execute(postgres, f'DROP TABLE "{doomed}"')
        with pytest.raises(IdempotencyStoreError) as caught:
            await store.claim("l", "k", lease=LONG)
        assert doomed in str(caught.value)
        assert "127.0.0.1:5432/test" in str(caught.value)
        assert isinstance(caught.value.__cause__, asyncpg.PostgresError)
    finally:
        await store.close()


def test_a_table_name_that_is_not_an_identifier_is_refused() -> None:
    with pytest.raises(ValueError, match="not a table name"):
        create_table_sql('keys"; DROP TABLE x; --')


# -- several instances, purging --------------------------------------------------------------------


async def test_two_instances_on_one_table_see_each_others_claims(postgres: str) -> None:
    one = PostgresIdempotencyStore(config(postgres))
    other = PostgresIdempotencyStore(config(postgres))
    await one.start()
    await other.start()
    try:
        ns = namespace()
        claim = await one.claim(ns, "order-1", lease=LONG)
        assert claim.token is not None
        assert (await other.claim(ns, "order-1", lease=LONG)).state is ClaimState.IN_PROGRESS
        await other.complete(ns, "order-1", claim.token, ttl=LONG)  # the token works from any instance
        assert (await one.claim(ns, "order-1", lease=LONG)).state is ClaimState.DONE
        racing = await asyncio.gather(
            *(store.claim(ns, "order-2", lease=LONG) for store in (one, other) for _ in range(10))
        )
        assert [claim.state for claim in racing].count(ClaimState.CLAIMED) == 1
    finally:
        await one.close()
        await other.close()


async def test_purging_deletes_expired_rows_in_batches_and_keeps_live_ones(postgres: str) -> None:
    # A table of its own: purging counts every expired row, and other tests leave some behind.
    store = PostgresIdempotencyStore(config(postgres, f"{TABLE}_purge"), purge_interval=3600, purge_batch=3)
    await store.start()
    try:
        ns = namespace()
        for index in range(10):
            await store.claim(ns, f"dead-{index}", lease=SHORT)
        live = await store.claim(ns, "live", lease=LONG)
        assert live.token is not None
        done = await store.claim(ns, "done", lease=SHORT)
        assert done.token is not None
        await store.complete(ns, "done", done.token, ttl=LONG)
        await asyncio.sleep(SHORT + 0.2)
        assert await store.purge_expired() == 10
        rows = await fetch(postgres, f'SELECT key FROM "{TABLE}_purge" WHERE namespace = $1 ORDER BY key', ns)
        assert [row[0] for row in rows] == ["done", "live"]
    finally:
        await store.close()


async def test_purging_stops_after_its_batch_budget(postgres: str) -> None:
    store = PostgresIdempotencyStore(
        config(postgres, f"{TABLE}_budget"), purge_interval=3600, purge_batch=2, purge_batches=2
    )
    await store.start()
    try:
        ns = namespace()
        for index in range(7):
            await store.claim(ns, f"dead-{index}", lease=SHORT)
        await asyncio.sleep(SHORT + 0.2)
        assert await store.purge_expired() == 4
        assert await store.purge_expired() == 3
    finally:
        await store.close()


async def test_the_background_task_purges(postgres: str) -> None:
    store = PostgresIdempotencyStore(config(postgres), purge_interval=0.2)
    await store.start()
    try:
        ns = namespace()
        await store.claim(ns, "dead", lease=0.1)
        await asyncio.sleep(1.0)
        assert not await fetch(postgres, f'SELECT 1 FROM "{TABLE}" WHERE namespace = $1', ns)
    finally:
        await store.close()


# -- transactional mode ----------------------------------------------------------------------------


async def test_a_business_write_and_the_key_commit_together(
    postgres: str, store: PostgresIdempotencyStore
) -> None:
    ns, order = namespace(), uuid.uuid4().hex
    async with store.transaction(ns, order, ttl=LONG) as tx:
        assert tx.state is ClaimState.CLAIMED
        assert not tx.duplicate
        await tx.connection.execute(f"INSERT INTO {ORDERS} (id) VALUES ($1)", order)
        assert await orders(postgres, order) == 0, "not visible before the commit"
    assert await orders(postgres, order) == 1
    assert (await store.claim(ns, order, lease=LONG)).state is ClaimState.DONE
    async with store.transaction(ns, order, ttl=LONG) as again:
        assert again.duplicate
        with pytest.raises(RuntimeError, match="no transaction"):
            _ = again.connection
    with pytest.raises(RuntimeError, match="scope ended"):
        _ = tx.connection


async def test_an_exception_rolls_back_the_business_write_and_the_key(
    postgres: str, store: PostgresIdempotencyStore
) -> None:
    ns, order = namespace(), uuid.uuid4().hex

    class HandlerFailed(Exception):
        pass

    async def failing_handler() -> None:
        async with store.transaction(ns, order, ttl=LONG) as tx:
            await tx.connection.execute(f"INSERT INTO {ORDERS} (id) VALUES ($1)", order)
            raise HandlerFailed

    with pytest.raises(HandlerFailed):
        await failing_handler()
    assert await orders(postgres, order) == 0
    assert (await store.claim(ns, order, lease=LONG)).state is ClaimState.CLAIMED


async def test_a_failing_business_statement_propagates_unchanged_and_frees_the_key(
    postgres: str, store: PostgresIdempotencyStore
) -> None:
    ns, order = namespace(), uuid.uuid4().hex
    await execute(postgres, f"INSERT INTO {ORDERS} (id) VALUES ('{order}')")

    async def handler_violating_a_constraint() -> None:
        async with store.transaction(ns, order, ttl=LONG) as tx:
            await tx.connection.execute(f"INSERT INTO {ORDERS} (id) VALUES ($1)", order)

    with pytest.raises(asyncpg.UniqueViolationError):  # the handler's error, not a store error
        await handler_violating_a_constraint()
    assert (await store.claim(ns, order, lease=LONG)).state is ClaimState.CLAIMED


async def test_a_concurrent_duplicate_waits_for_the_first_commit_and_then_skips(
    postgres: str, store: PostgresIdempotencyStore
) -> None:
    ns, order = namespace(), uuid.uuid4().hex
    first_wrote, second_started = asyncio.Event(), asyncio.Event()
    effects: list[str] = []

    async def handle(name: str, hold: asyncio.Event | None) -> bool:
        async with store.transaction(ns, order, ttl=LONG, wait=10) as tx:
            if tx.duplicate:
                return True
            await tx.connection.execute(f"INSERT INTO {ORDERS} (id) VALUES ($1)", order)
            effects.append(name)
            first_wrote.set()
            if hold is not None:
                await hold.wait()
            return False

    first = asyncio.create_task(handle("first", second_started))
    await first_wrote.wait()
    second = asyncio.create_task(handle("second", None))
    await asyncio.sleep(0.5)
    assert not second.done(), "the duplicate waits on the key while the first transaction is open"
    second_started.set()
    assert await first is False
    assert await second is True
    assert effects == ["first"]
    assert await orders(postgres, order) == 1


async def test_a_concurrent_duplicate_runs_when_the_first_rolls_back(
    postgres: str, store: PostgresIdempotencyStore
) -> None:
    ns, order = namespace(), uuid.uuid4().hex
    first_wrote, release_first = asyncio.Event(), asyncio.Event()

    async def failing_first() -> None:
        async with store.transaction(ns, order, ttl=LONG) as tx:
            await tx.connection.execute(f"INSERT INTO {ORDERS} (id) VALUES ($1)", order)
            first_wrote.set()
            await release_first.wait()
            raise RuntimeError("handler failed")

    first = asyncio.create_task(failing_first())
    await first_wrote.wait()

    async def second() -> ClaimState:
        async with store.transaction(ns, order, ttl=LONG, wait=10) as tx:
            if tx.state is ClaimState.CLAIMED:
                await tx.connection.execute(f"INSERT INTO {ORDERS} (id) VALUES ($1)", order)
            return tx.state

    waiting = asyncio.create_task(second())
    await asyncio.sleep(0.3)
    release_first.set()
    with pytest.raises(RuntimeError, match="handler failed"):
        await first
    assert await waiting is ClaimState.CLAIMED
    assert await orders(postgres, order) == 1


async def test_a_duplicate_that_waits_longer_than_wait_is_in_progress(
    postgres: str, store: PostgresIdempotencyStore
) -> None:
    ns, order = namespace(), uuid.uuid4().hex
    async with store.transaction(ns, order, ttl=LONG) as tx:
        await tx.connection.execute(f"INSERT INTO {ORDERS} (id) VALUES ($1)", order)
        started = time.monotonic()
        async with store.transaction(ns, order, ttl=LONG, wait=0.3) as blocked:
            assert blocked.state is ClaimState.IN_PROGRESS
            assert not blocked.duplicate
        assert 0.25 < time.monotonic() - started < 2
    assert await orders(postgres, order) == 1
    assert (await store.claim(ns, order, lease=LONG)).state is ClaimState.DONE


async def test_a_key_under_a_claim_mode_lease_is_in_progress(store: PostgresIdempotencyStore) -> None:
    ns = namespace()
    await store.claim(ns, "order", lease=LONG)
    async with store.transaction(ns, "order", ttl=LONG) as tx:
        assert tx.state is ClaimState.IN_PROGRESS
        assert tx.retry_after is not None
        assert 0 < tx.retry_after <= LONG


async def test_a_crash_between_the_business_write_and_the_commit_leaves_neither(
    postgres: str, store: PostgresIdempotencyStore
) -> None:
    ns, order = namespace(), uuid.uuid4().hex

    async def dies_before_commit() -> None:
        async with store.transaction(ns, order, ttl=LONG) as tx:
            await tx.connection.execute(f"INSERT INTO {ORDERS} (id) VALUES ($1)", order)
            # The process "dies" here: its connection is cut before the commit reaches the server.
            pid = tx.connection.get_server_pid()
            assert (await fetch(postgres, "SELECT pg_terminate_backend($1)", pid))[0][0] is True

    with pytest.raises(IdempotencyStoreError, match="commit failed"):
        await dies_before_commit()
    assert await orders(postgres, order) == 0
    assert not await fetch(postgres, f'SELECT 1 FROM "{TABLE}" WHERE namespace = $1', ns)
    async with store.transaction(ns, order, ttl=LONG) as redelivered:  # the pool recovered
        assert redelivered.state is ClaimState.CLAIMED
        await redelivered.connection.execute(f"INSERT INTO {ORDERS} (id) VALUES ($1)", order)
    assert await orders(postgres, order) == 1
