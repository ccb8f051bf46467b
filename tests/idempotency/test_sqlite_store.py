"""The SQLite store: the store contract on a file, sharing one file between stores, expiry on the
application clock, bounded purging, and errors that name the file."""

from __future__ import annotations

import asyncio
import re
import sqlite3
import sys
import time
from asyncio.subprocess import PIPE
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from listeners import ManualClock
from listeners.exceptions import IdempotencyStoreError
from listeners.idempotency.config import SqliteStoreConfig
from listeners.idempotency.sqlite import PURGE_BATCH, PURGE_EVERY, TABLE, SqliteIdempotencyStore
from listeners.idempotency.store import ClaimState
from tests.idempotency.store_suite import StoreSuite


def rows(path: Path) -> int:
    with sqlite3.connect(path) as db:
        count: int = db.execute(f"SELECT count(*) FROM {TABLE}").fetchone()[0]
        return count


class TestSqliteStore(StoreSuite):
    @pytest.fixture
    async def store(self, tmp_path: Path) -> AsyncIterator[SqliteIdempotencyStore]:
        store = SqliteIdempotencyStore(SqliteStoreConfig(path=str(tmp_path / "idempotency.db")))
        await store.start()
        yield store
        await store.close()


async def test_the_file_is_created_with_its_directories_in_wal_mode(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "deeper" / "keys.db"
    store = SqliteIdempotencyStore(SqliteStoreConfig(path=str(path)))
    await store.start()
    try:
        await store.claim("l", "k", lease=30)
    finally:
        await store.close()
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert rows(path) == 1


async def test_two_stores_on_one_file_see_each_others_claims(tmp_path: Path) -> None:
    config = SqliteStoreConfig(path=str(tmp_path / "shared.db"))
    one, other = SqliteIdempotencyStore(config), SqliteIdempotencyStore(config)
    await one.start()
    await other.start()
    try:
        claim = await one.claim("l", "order", lease=60)
        assert claim.token is not None
        in_progress = await other.claim("l", "order", lease=60)
        assert in_progress.state is ClaimState.IN_PROGRESS
        assert in_progress.retry_after is not None
        assert 59 < in_progress.retry_after <= 60
        await other.release("l", "order", claim.token)  # the token works from any instance
        again = await other.claim("l", "order", lease=60)
        assert again.state is ClaimState.CLAIMED
        assert again.token is not None
        await other.complete("l", "order", again.token, ttl=60)
        assert (await one.claim("l", "order", lease=60)).state is ClaimState.DONE
    finally:
        await one.close()
        await other.close()


async def test_concurrent_claims_through_several_connections_give_one_holder(tmp_path: Path) -> None:
    config = SqliteStoreConfig(path=str(tmp_path / "shared.db"))
    stores = [SqliteIdempotencyStore(config) for _ in range(4)]
    for store in stores:
        await store.start()
    try:
        # Each store has its own connection and thread, so these really race for the file's write lock.
        claims = await asyncio.gather(
            *(stores[n % 4].claim("l", f"hot-{n % 10}", lease=60) for n in range(200))
        )
    finally:
        for store in stores:
            await store.close()
    for key in range(10):
        states = [claim.state for n, claim in enumerate(claims) if n % 10 == key]
        assert states.count(ClaimState.CLAIMED) == 1
        assert states.count(ClaimState.IN_PROGRESS) == 19


_PROCESS = """
import asyncio, sys, time
from listeners.idempotency.config import SqliteStoreConfig
from listeners.idempotency.sqlite import SqliteIdempotencyStore

async def main(path: str, at: float) -> None:
    store = SqliteIdempotencyStore(SqliteStoreConfig(path=path))
    await store.start()
    await asyncio.sleep(at - time.time())
    claimed = []
    for index in range(300):
        claim = await store.claim("l", f"k{index}", lease=60)
        if claim.token is not None:
            claimed.append(index)
            await store.complete("l", f"k{index}", claim.token, ttl=60)
    await store.close()
    print(" ".join(map(str, claimed)))

asyncio.run(main(sys.argv[1], float(sys.argv[2])))
"""


async def test_processes_sharing_the_file_claim_each_key_once(tmp_path: Path) -> None:
    path = str(tmp_path / "shared.db")
    at = time.time() + 2.0  # the processes claim together, once all have started
    processes = [
        await asyncio.create_subprocess_exec(
            sys.executable, "-c", _PROCESS, path, str(at), stdout=PIPE, stderr=PIPE
        )
        for _ in range(3)
    ]
    try:
        async with asyncio.timeout(30):
            outputs = [await process.communicate() for process in processes]
    finally:
        for process in processes:
            if process.returncode is None:
                process.kill()
                await process.wait()
    for process, (_, err) in zip(processes, outputs, strict=True):
        assert process.returncode == 0, err.decode()
    claimed = [int(index) for out, _ in outputs for index in out.split()]
    assert sorted(claimed) == list(range(300)), "every key handled by exactly one process"


async def test_leases_and_ttls_run_on_the_injected_clock(tmp_path: Path) -> None:
    clock = ManualClock()
    store = SqliteIdempotencyStore(SqliteStoreConfig(path=str(tmp_path / "keys.db")), clock)
    await store.start()
    try:
        first = await store.claim("l", "k", lease=30)
        assert first.token is not None
        await clock.advance(29.9)
        assert (await store.claim("l", "k", lease=30)).retry_after == pytest.approx(0.1)
        await clock.advance(0.1)
        second = await store.claim("l", "k", lease=30)
        assert second.state is ClaimState.CLAIMED
        assert second.token is not None
        await store.complete("l", "k", first.token, ttl=3600)  # the expired claim changes nothing
        assert (await store.claim("l", "k", lease=30)).state is ClaimState.IN_PROGRESS
        await store.complete("l", "k", second.token, ttl=3600)
        await clock.advance(3599)
        assert (await store.claim("l", "k", lease=30)).state is ClaimState.DONE
        await clock.advance(1)
        assert (await store.claim("l", "k", lease=30)).state is ClaimState.CLAIMED
    finally:
        await store.close()


async def test_expired_rows_are_purged_in_bounded_batches(tmp_path: Path) -> None:
    path = tmp_path / "keys.db"
    clock = ManualClock()
    store = SqliteIdempotencyStore(SqliteStoreConfig(path=str(path)), clock)
    await store.start()
    old = PURGE_BATCH + PURGE_BATCH // 2
    try:
        for index in range(old):
            claim = await store.claim("l", f"old-{index}", lease=30)
            assert claim.token is not None
            await store.complete("l", f"old-{index}", claim.token, ttl=60)
        await clock.advance(61)
        # The claims above triggered purges too, but found nothing expired yet.
        for index in range(PURGE_EVERY - old % PURGE_EVERY):
            await store.claim("l", f"new-{index}", lease=3600)
        assert rows(path) == old - PURGE_BATCH + PURGE_EVERY - old % PURGE_EVERY, "one batch deleted"
        for index in range(PURGE_EVERY):
            await store.claim("l", f"newer-{index}", lease=3600)
        assert rows(path) == 2 * PURGE_EVERY - old % PURGE_EVERY, "the rest deleted, live rows kept"
    finally:
        await store.close()


async def test_a_path_under_a_file_gives_an_error_naming_it(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    path = blocker / "idempotency.db"
    with pytest.raises(IdempotencyStoreError, match=re.escape(str(path))):
        await SqliteIdempotencyStore(SqliteStoreConfig(path=str(path))).start()


async def test_a_path_that_is_a_directory_gives_an_error_naming_it(tmp_path: Path) -> None:
    with pytest.raises(IdempotencyStoreError, match=re.escape(str(tmp_path))):
        await SqliteIdempotencyStore(SqliteStoreConfig(path=str(tmp_path))).start()


async def test_a_file_that_is_not_a_database_gives_an_error_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "garbage.db"
    path.write_bytes(b"this is not a sqlite database, just some bytes" * 100)
    with pytest.raises(IdempotencyStoreError, match=re.escape(str(path))):
        await SqliteIdempotencyStore(SqliteStoreConfig(path=str(path))).start()


async def test_a_store_that_is_not_started_or_closed_raises_the_store_error(tmp_path: Path) -> None:
    store = SqliteIdempotencyStore(SqliteStoreConfig(path=str(tmp_path / "keys.db")))
    with pytest.raises(IdempotencyStoreError, match="not started"):
        await store.claim("l", "k", lease=30)
    await store.start()
    await store.close()
    with pytest.raises(IdempotencyStoreError, match=r"keys\.db"):
        await store.release("l", "k", "token")


async def test_a_table_broken_under_the_store_gives_an_error_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "keys.db"
    store = SqliteIdempotencyStore(SqliteStoreConfig(path=str(path)))
    await store.start()
    try:
        with sqlite3.connect(path) as db:
            db.execute(f"DROP TABLE {TABLE}")
        with pytest.raises(IdempotencyStoreError, match=re.escape(str(path))):
            await store.claim("l", "k", lease=30)
    finally:
        await store.close()
