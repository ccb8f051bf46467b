"""An idempotency store in a PostgreSQL table (asyncpg), shared by every instance that uses the table.

One row per claimed or handled key::

    namespace text, key text, token text NULL (NULL = done), expires_at timestamptz,
    PRIMARY KEY (namespace, key), plus an index on expires_at for purging

A claim is one ``INSERT ... ON CONFLICT DO UPDATE ... WHERE expires_at <= clock_timestamp()``: it takes a
free key or one whose lease/TTL ran out, and the primary key makes concurrent claims of one key (from
any number of hosts) serialise on the index, so exactly one wins. Every expiry is computed and compared
on the server's clock, so instances whose clocks disagree still agree on who holds a key. Expired rows
are purged in small batches by a background task, never on the claim path.

**Transactional mode** (:meth:`PostgresIdempotencyStore.transaction`): the key row is inserted as done
inside a transaction whose connection the handler uses for its own writes, so the business writes and
the key commit or roll back together. A crash between the write and the commit leaves neither, and a
concurrent duplicate waits on the unique index until the first transaction ends, then skips.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import TypeAlias, TypeVar
from urllib.parse import urlsplit

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from listeners.exceptions import IdempotencyStoreError
from listeners.idempotency.config import PostgresStoreConfig
from listeners.idempotency.postgres_sql import Statements, create_table_sql, describe_server, quote_table
from listeners.idempotency.store import Claim, ClaimState, StoreTransaction, new_token

log = logging.getLogger("listeners.idempotency")

_T = TypeVar("_T")
Connection: TypeAlias = "PoolConnectionProxy[asyncpg.Record]"  # a string: not subscriptable at runtime
"""The connection :attr:`PostgresTransaction.connection` hands to a handler (a pooled asyncpg one)."""

_ERRORS = (
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    asyncpg.exceptions.InternalClientError,  # e.g. a command sent while the server is closing the link
    OSError,
    TimeoutError,
)
"""What asyncpg raises for a server error, a lost or closed connection/pool, or a timeout."""
_CLAIM_ATTEMPTS = 3
"""Claim rounds when the row that blocked a claim vanished before it could be read (released or expired
in between); past that the key is churning and deferring is the safe answer."""


class PostgresTransaction(StoreTransaction):
    """What :meth:`PostgresIdempotencyStore.transaction` yields: the key's state and, when this
    transaction holds the key, the connection to write the handler's business rows on.

    - ``state is CLAIMED``: run the handler on :attr:`connection`; the key row commits with its writes.
    - ``duplicate`` (``state is DONE``): the key was handled already; skip (acknowledge) the message.
    - ``state is IN_PROGRESS``: a claim-mode lease holds the key, or the first transaction on it did
      not finish within ``wait``; defer the message (``retry_after`` seconds when known).
    """

    def __init__(self, state: ClaimState, connection: Connection | None, retry_after: float | None) -> None:
        self.state = state
        self.retry_after = retry_after
        self._connection = connection

    @property
    def connection(self) -> Connection:
        """The connection inside the transaction; only while it holds the key and the scope is open."""
        if self._connection is None:
            raise RuntimeError(
                f"no transaction to write in: the key is {self.state.value} or the scope ended"
            )
        return self._connection


class PostgresIdempotencyStore:
    """:class:`~listeners.idempotency.store.IdempotencyStore` in a PostgreSQL table, on an asyncpg pool.

    ``purge_interval`` is the mean number of seconds between purges of expired rows (each at most
    ``purge_batches`` deletes of ``purge_batch`` rows, so a purge never holds many row locks at once).
    """

    def __init__(
        self,
        config: PostgresStoreConfig,
        *,
        purge_interval: float = 60.0,
        purge_batch: int = 1000,
        purge_batches: int = 10,
    ) -> None:
        self._config = config
        self._sql = Statements(config.table)
        self._server = describe_server(config.dsn.get_secret_value())
        self._purge_interval = purge_interval
        self._purge_batch = purge_batch
        self._purge_batches = purge_batches
        self._pool: asyncpg.Pool[asyncpg.Record] | None = None
        self._purger: asyncio.Task[None] | None = None

    @property
    def table(self) -> str:
        """The configured table name."""
        return self._config.table

    async def start(self) -> None:
        """Connect, create the table when configured (else check it exists), validate the statements
        against it, and start the purge task."""
        if self._pool is not None:
            return
        timeout = self._config.timeout
        try:
            pool = await asyncpg.create_pool(
                self._config.dsn.get_secret_value(),
                min_size=1,
                max_size=self._config.pool_size,
                timeout=timeout,  # connect
                command_timeout=timeout,  # every statement unless it says otherwise
            )
        except (*_ERRORS, ValueError) as exc:  # ValueError: a malformed DSN
            raise self._error("connect", exc) from exc
        try:
            async with pool.acquire(timeout=timeout) as con:
                if self._config.create_table:
                    await self._create_table(con)
                if await con.fetchval("SELECT to_regclass($1)", quote_table(self.table)) is None:
                    raise IdempotencyStoreError(
                        f"PostgreSQL idempotency store at {self._server}: table {self.table!r} does not exist"
                        " (create_table is false). Create it with the SQL from"
                        f" listeners.idempotency.postgres.create_table_sql({self.table!r}), or set"
                        " listeners.idempotency.postgres.create_table: true"
                    )
                # Preparing every statement now turns a table of the wrong shape into a start error.
                sql_texts = (
                    self._sql.claim,
                    self._sql.read,
                    self._sql.complete,
                    self._sql.release,
                    self._sql.extend,
                )
                for sql in sql_texts:
                    await con.prepare(sql)
        except BaseException as exc:
            pool.terminate()
            if isinstance(exc, _ERRORS):
                raise self._error("start", exc) from exc
            raise
        self._pool = pool
        self._purger = asyncio.create_task(self._purge_loop(), name=f"purge {self.table}")

    async def claim(self, namespace: str, key: str, *, lease: float) -> Claim:
        """Claim ``key`` for ``lease`` seconds of server time unless it is done or under a live lease."""
        token = new_token()
        return await self._run("claim", lambda con: self._claim_on(con, namespace, key, token, lease))

    async def complete(self, namespace: str, key: str, token: str, *, ttl: float) -> None:
        """Mark ``key`` done for ``ttl`` seconds if ``token`` still holds it."""
        sql = self._sql.complete
        await self._run("complete", lambda con: con.execute(sql, namespace, key, token, float(ttl)))

    async def release(self, namespace: str, key: str, token: str) -> None:
        """Delete ``key``'s claim if ``token`` still holds it, so a redelivery can claim it."""
        sql = self._sql.release
        await self._run("release", lambda con: con.execute(sql, namespace, key, token))

    async def extend(self, namespace: str, key: str, token: str, *, lease: float) -> bool:
        """Renew ``key``'s lease for ``lease`` seconds if ``token`` still holds it (and it is live)."""
        sql = self._sql.extend
        held = await self._run("extend", lambda con: con.fetchval(sql, namespace, key, token, float(lease)))
        return bool(held)

    async def purge_expired(self) -> int:
        """Delete expired rows (dead leases, done keys past their TTL) in bounded batches; returns how
        many. The background task calls this; it is public for tests and maintenance jobs."""
        deleted = 0
        for _ in range(self._purge_batches):
            status = await self._run("purge", lambda con: con.execute(self._sql.purge, self._purge_batch))
            count = int(status.rpartition(" ")[2])  # "DELETE <n>"
            deleted += count
            if count < self._purge_batch:
                break
        return deleted

    @asynccontextmanager
    async def transaction(
        self, namespace: str, key: str, *, ttl: float, wait: float | None = None
    ) -> AsyncIterator[PostgresTransaction]:
        """Insert ``key`` as done (for ``ttl`` seconds) in a new transaction and yield it.

        When the yielded :class:`PostgresTransaction` holds the key, the handler writes on its
        ``connection``; leaving the block commits the key with those writes, and an exception rolls
        both back (the exception propagates unchanged). A failed commit (lost connection, server error,
        timeout) raises IdempotencyStoreError: both rows committed or neither did, and a redelivery
        finds out which (it is a duplicate, or it runs). A concurrent
        transaction on the same key waits (up to ``wait`` seconds, default the configured timeout) for
        this one to end: after a commit it yields a duplicate, after a rollback it holds the key. A
        duplicate or in-progress key yields no connection and holds none from the pool.
        """
        pool = self._require_pool("transaction")
        try:
            con = await pool.acquire(timeout=self._config.timeout)
        except _ERRORS as exc:
            raise self._error("transaction", exc) from exc
        held = True
        handle: PostgresTransaction | None = None
        try:
            tx = con.transaction()
            try:
                await tx.start()
            except _ERRORS as exc:
                await self._abandon(tx, con)
                raise self._error("transaction", exc) from exc
            claim = await self._claim_in(tx, con, namespace, key, ttl, wait)
            if claim.state is not ClaimState.CLAIMED:
                # Give the connection back before yielding: a skipped message must not hold one.
                held = False
                await pool.release(con)
                yield PostgresTransaction(claim.state, None, claim.retry_after)
                return
            handle = PostgresTransaction(ClaimState.CLAIMED, con, None)
            try:
                yield handle
            except BaseException:
                await self._abandon(tx, con)
                raise
            try:
                await tx.commit()
            except _ERRORS as exc:
                # No rollback to try: the server ended the transaction or the connection is gone, and
                # the pool resets or replaces the connection on release.
                raise self._error("commit", exc) from exc
        finally:
            if handle is not None:
                handle._connection = None  # back to the pool: writes after the block would escape
            if held:
                await pool.release(con)

    async def close(self) -> None:
        """Stop the purge task and close the pool (terminating it if connections are not returned
        within the timeout)."""
        pool, self._pool = self._pool, None
        if self._purger is not None:
            self._purger.cancel()
            await asyncio.gather(self._purger, return_exceptions=True)
            self._purger = None
        if pool is not None:
            try:
                await asyncio.wait_for(pool.close(), self._config.timeout)
            except asyncio.CancelledError:
                pool.terminate()
                raise
            except _ERRORS as exc:
                # A connection still out (a transaction scope left open) or a dead server: the pool
                # must go anyway, and closing the sockets makes the server roll back what is open.
                log.warning("closing the PostgreSQL idempotency pool for %s failed: %r", self.table, exc)
                pool.terminate()

    async def _create_table(self, con: Connection) -> None:
        # Concurrent CREATE ... IF NOT EXISTS from instances starting together can still collide in the
        # catalog; an advisory lock on the table name serialises them.
        async with con.transaction():
            await con.execute("SELECT pg_advisory_xact_lock(hashtext($1))", self.table)
            await con.execute(create_table_sql(self.table))

    async def _claim_on(
        self,
        con: Connection,
        namespace: str,
        key: str,
        token: str | None,
        seconds: float,
        *,
        timeout: float | None = None,
    ) -> Claim:
        for _ in range(_CLAIM_ATTEMPTS):
            # timeout None = the pool's command_timeout
            if await con.fetchval(self._sql.claim, namespace, key, token, float(seconds), timeout=timeout):
                return Claim(ClaimState.CLAIMED, token)
            row = await con.fetchrow(self._sql.read, namespace, key)
            if row is None or row["left"] <= 0:
                continue  # released or expired since the claim looked: the key may be free now
            if row["done"]:
                return Claim(ClaimState.DONE)
            return Claim(ClaimState.IN_PROGRESS, retry_after=row["left"])
        return Claim(ClaimState.IN_PROGRESS)

    async def _claim_in(
        self,
        tx: asyncpg.transaction.Transaction,
        con: Connection,
        namespace: str,
        key: str,
        ttl: float,
        wait: float | None,
    ) -> Claim:
        """Insert the key as done inside ``tx``; roll back unless this transaction now holds it."""
        try:
            claim = await self._claim_on(
                con, namespace, key, None, ttl, timeout=self._config.timeout if wait is None else wait
            )
        except TimeoutError:
            # The first transaction on this key is still running: not an outage, a key in use.
            await self._abandon(tx, con)
            return Claim(ClaimState.IN_PROGRESS)
        except _ERRORS as exc:
            await self._abandon(tx, con)
            raise self._error("transaction", exc) from exc
        if claim.state is not ClaimState.CLAIMED:
            await self._abandon(tx, con)
        return claim

    async def _abandon(self, tx: asyncpg.transaction.Transaction, con: Connection) -> None:
        """Roll back; when even that fails, close the connection, which makes the server roll back.
        Never raises a database error, so the error that led here is the one the caller sees."""
        try:
            await tx.rollback()
        except BaseException as exc:
            with contextlib.suppress(asyncpg.InterfaceError):  # the pool detached it: closed already
                con.terminate()
            if not isinstance(exc, _ERRORS):
                raise
            log.debug("rollback failed, connection closed instead: %r", exc)

    async def _run(self, op: str, call: Callable[[Connection], Awaitable[_T]]) -> _T:
        pool = self._require_pool(op)
        try:
            async with pool.acquire(timeout=self._config.timeout) as con:
                return await call(con)
        except _ERRORS as exc:
            raise self._error(op, exc) from exc

    async def _purge_loop(self) -> None:
        while True:
            # Jittered, so instances sharing the table do not all purge at the same moment.
            await asyncio.sleep(self._purge_interval * random.uniform(0.5, 1.5))
            try:
                deleted = await self.purge_expired()
            except IdempotencyStoreError as exc:
                log.warning("purging expired idempotency keys failed (will try again): %s", exc)
            else:
                log.debug("purged %d expired idempotency keys from %s", deleted, self.table)

    def _require_pool(self, op: str) -> asyncpg.Pool[asyncpg.Record]:
        if self._pool is None:
            raise IdempotencyStoreError(
                f"PostgreSQL idempotency store at {self._server} (table {self.table!r}): {op} on a store"
                " that is not started or already closed"
            )
        return self._pool

    def _error(self, op: str, exc: BaseException) -> IdempotencyStoreError:
        detail = str(exc) or type(exc).__name__
        password = urlsplit(self._config.dsn.get_secret_value()).password
        if password:
            detail = detail.replace(password, "***")  # a driver message may quote the DSN
        return IdempotencyStoreError(
            f"PostgreSQL idempotency store at {self._server} (table {self.table!r}): {op} failed:"
            f" {type(exc).__name__}: {detail}"
        )
