"""An idempotency store in one SQLite file (aiosqlite): the embedded default, shared by the processes
of one host.

One table keyed by ``(namespace, key)`` holds the claim ``token`` (NULL once the key is done) and
``expires_at`` (epoch seconds on the application clock: the lease of a claim, the TTL of a done key).
A claim is a single upsert that takes the row only where it expired and returns the row as it is
afterwards, so it is atomic between connections and processes and needs one statement. The file is
in WAL mode; writers from other processes wait up to a busy timeout instead of failing at once.
Expired rows are deleted in bounded batches every few hundred claims.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import aiosqlite

from listeners.clock import Clock, SystemClock
from listeners.exceptions import IdempotencyStoreError
from listeners.idempotency.config import SqliteStoreConfig
from listeners.idempotency.store import Claim, ClaimState, new_token

TABLE = "listeners_idempotency"
BUSY_TIMEOUT = 5.0
"""Seconds a statement waits for another process's write lock before it fails."""
PURGE_EVERY = 256
"""Claims between purges of expired rows."""
PURGE_BATCH = 1000
"""Most rows one purge deletes: more than PURGE_EVERY claims can add, so the table stays bounded by
the keys of one TTL, while no single claim pays for an unbounded delete."""

_SCHEMA = (
    f"""CREATE TABLE IF NOT EXISTS {TABLE} (
        namespace TEXT NOT NULL,
        "key" TEXT NOT NULL,
        token TEXT,
        expires_at REAL NOT NULL,
        PRIMARY KEY (namespace, "key")
    )""",
    f"CREATE INDEX IF NOT EXISTS {TABLE}_expires_at ON {TABLE} (expires_at)",
)
# In an UPDATE every right-hand side reads the row as it was, so both CASEs test the old expiry. A
# live row is "updated" to itself, which makes RETURNING report its holder in the same statement.
_CLAIM = f"""
    INSERT INTO {TABLE} (namespace, "key", token, expires_at) VALUES (?1, ?2, ?3, ?4)
    ON CONFLICT (namespace, "key") DO UPDATE SET
        token = CASE WHEN expires_at <= ?5 THEN excluded.token ELSE token END,
        expires_at = CASE WHEN expires_at <= ?5 THEN excluded.expires_at ELSE expires_at END
    RETURNING token, expires_at
"""
_COMPLETE = (
    f'UPDATE {TABLE} SET token = NULL, expires_at = ?4 WHERE namespace = ?1 AND "key" = ?2 AND token = ?3'
)
_RELEASE = f'DELETE FROM {TABLE} WHERE namespace = ?1 AND "key" = ?2 AND token = ?3'
_EXTEND = (
    f'UPDATE {TABLE} SET expires_at = ?4 WHERE namespace = ?1 AND "key" = ?2 AND token = ?3'
    " AND expires_at > ?5 RETURNING 1"
)
_PURGE = f"DELETE FROM {TABLE} WHERE rowid IN (SELECT rowid FROM {TABLE} WHERE expires_at <= ?1 LIMIT ?2)"


class SqliteIdempotencyStore:
    """:class:`~listeners.idempotency.store.IdempotencyStore` in a SQLite file (``config.path``).

    Leases and TTLs run on ``clock`` (the application clock), so tests can expire them with
    ``ManualClock``; processes sharing the file must therefore share a wall clock (one host).
    """

    def __init__(self, config: SqliteStoreConfig, clock: Clock | None = None) -> None:
        self._path = config.path
        self._clock = clock or SystemClock()
        self._db: aiosqlite.Connection | None = None
        self._claims = 0

    @property
    def path(self) -> str:
        """The database file."""
        return self._path

    async def start(self) -> None:
        if self._db is not None:
            return
        try:
            connection = await asyncio.to_thread(self._open, self._clock.time())
        except (sqlite3.Error, OSError) as error:
            raise self._error("cannot be opened", error) from error
        # Opening is done in plain sqlite3 (above) so that a failure leaves no aiosqlite worker thread
        # behind; aiosqlite then only adopts the prepared connection, which cannot fail.
        self._db = await aiosqlite.Connection(lambda: connection, iter_chunk_size=64)

    async def claim(self, namespace: str, key: str, *, lease: float) -> Claim:
        now = self._clock.time()
        token = new_token()
        rows = await self._run(_CLAIM, (namespace, key, token, now + lease, now))
        holder, expires_at = next(iter(rows))
        self._claims += 1
        if self._claims % PURGE_EVERY == 0:
            await self._run(_PURGE, (now, PURGE_BATCH))
        if holder == token:
            return Claim(ClaimState.CLAIMED, token)
        if holder is None:
            return Claim(ClaimState.DONE)
        return Claim(ClaimState.IN_PROGRESS, retry_after=max(0.0, expires_at - now))

    async def complete(self, namespace: str, key: str, token: str, *, ttl: float) -> None:
        await self._run(_COMPLETE, (namespace, key, token, self._clock.time() + ttl))

    async def release(self, namespace: str, key: str, token: str) -> None:
        await self._run(_RELEASE, (namespace, key, token))

    async def extend(self, namespace: str, key: str, token: str, *, lease: float) -> bool:
        now = self._clock.time()
        return bool(list(await self._run(_EXTEND, (namespace, key, token, now + lease, now))))

    async def close(self) -> None:
        db, self._db = self._db, None
        if db is not None:
            try:
                await db.close()
            except (sqlite3.Error, OSError) as error:
                raise self._error("cannot close", error) from error

    async def _run(self, sql: str, parameters: tuple[Any, ...]) -> Iterable[Any]:
        if self._db is None:
            raise IdempotencyStoreError(f"SQLite idempotency store {self._where()} is not started")
        try:
            # execute_fetchall steps the statement to its end in one hop to the connection's thread,
            # which is what commits it in autocommit mode.
            return await self._db.execute_fetchall(sql, parameters)
        except (sqlite3.Error, OSError) as error:
            raise self._error("failed", error) from error

    def _open(self, now: float) -> sqlite3.Connection:
        if self._path != ":memory:":
            Path(self._path).parent.mkdir(parents=True, exist_ok=True)
        # Autocommit (isolation_level=None): every statement is its own transaction, so nothing holds
        # the write lock between two awaits. check_same_thread=False: aiosqlite's thread adopts it.
        db = sqlite3.connect(self._path, timeout=BUSY_TIMEOUT, isolation_level=None, check_same_thread=False)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            # NORMAL in WAL mode survives a crash of the process (what leases are for); an OS crash or
            # power loss may lose the last commits, as Redis without fsync-always would.
            db.execute("PRAGMA synchronous=NORMAL")
            for statement in _SCHEMA:
                db.execute(statement)
            db.execute(_PURGE, (now, PURGE_BATCH))
        except BaseException:
            db.close()
            raise
        return db

    def _where(self) -> str:
        return self._path if self._path == ":memory:" else os.path.abspath(self._path)

    def _error(self, what: str, error: BaseException) -> IdempotencyStoreError:
        return IdempotencyStoreError(f"SQLite idempotency store {self._where()} {what}: {error}")
