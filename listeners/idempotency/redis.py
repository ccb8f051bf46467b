"""An idempotency store in Redis (redis.asyncio), shared by every instance that reaches the server.

Each key is one string, ``<prefix><namespace>:<key>``, whose value is the claim token while in
progress and ``done`` once completed; it always carries an expiry (the lease, then the TTL), so
Redis never keeps a key forever. Every operation is one Lua script, hence one round trip and atomic:

- claim: ``SET key token NX PX lease``; if the key exists, answer whether it is done or in progress
  (with its PTTL). Doing the read in the same script closes the window in which the key could expire
  between a failed ``SET NX`` and a separate ``GET``.
- complete: if the value is the caller's token, ``SET key done PX ttl``.
- release: if the value is the caller's token, ``DEL key``.

Leases and TTLs run on the Redis server's clock.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.commands.core import AsyncScript
from redis.exceptions import RedisError

from listeners.exceptions import IdempotencyStoreError
from listeners.idempotency.config import RedisStoreConfig
from listeners.idempotency.store import Claim, ClaimState, new_token

DONE = "done"
"""The value of a completed key; tokens are hex, so no token equals it."""
MAX_CONNECTIONS = 64
"""Connections one store opens at most; an operation waits up to ``timeout`` for a free one."""

_CLAIMED, _DONE, _IN_PROGRESS = 1, 2, 3

# KEYS[1] key; ARGV[1] token, ARGV[2] lease (ms), ARGV[3] done marker -> {state, pttl}.
# Inside a script expiry is judged at the script's start, so a key that SET NX found is still there.
CLAIM_SCRIPT = """
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return {1, 0}
end
local state = 3
if redis.call('GET', KEYS[1]) == ARGV[3] then state = 2 end
return {state, redis.call('PTTL', KEYS[1])}
"""
# KEYS[1] key; ARGV[1] token, ARGV[2] done marker, ARGV[3] ttl (ms) -> 1 if completed.
COMPLETE_SCRIPT = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
  return 1
end
return 0
"""
# KEYS[1] key; ARGV[1] token -> 1 if released.
RELEASE_SCRIPT = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


class RedisIdempotencyStore:
    """:class:`~listeners.idempotency.store.IdempotencyStore` in Redis (``config.url``).

    Each operation is one ``EVALSHA`` (the scripts are loaded by :meth:`start`; a server that forgot
    them gets them again transparently). Connection errors, timeouts and server errors are raised as
    :class:`~listeners.exceptions.IdempotencyStoreError` naming the server without its password.
    """

    def __init__(self, config: RedisStoreConfig) -> None:
        self._config = config
        self._where = redacted(config.url.get_secret_value())
        self._client: Redis | None = None
        self._claim: AsyncScript | None = None
        self._complete: AsyncScript | None = None
        self._release: AsyncScript | None = None

    @property
    def where(self) -> str:
        """The server's URL without credentials."""
        return self._where

    async def start(self) -> None:
        if self._client is not None:
            return
        timeout = self._config.timeout
        try:
            pool = BlockingConnectionPool.from_url(
                self._config.url.get_secret_value(),
                max_connections=MAX_CONNECTIONS,
                timeout=timeout,
                socket_timeout=timeout,
                socket_connect_timeout=timeout,
                decode_responses=True,
                # One immediate retry replaces a pooled connection the server closed while idle; more
                # (with the client's default back-off) would stretch an outage far past ``timeout``.
                retry=Retry(NoBackoff(), 1),
            )
        except ValueError as error:  # a malformed URL
            raise IdempotencyStoreError(f"Redis idempotency store {self._where}: {error}") from None
        client = Redis(connection_pool=pool)
        claim = client.register_script(CLAIM_SCRIPT)
        complete = client.register_script(COMPLETE_SCRIPT)
        release = client.register_script(RELEASE_SCRIPT)
        try:
            await client.ping()
            # Loaded now so the first operations are one EVALSHA each, not EVALSHA + LOAD + EVALSHA.
            for script in (claim, complete, release):
                script.sha = await client.script_load(script.script)
        except (RedisError, OSError) as error:
            await client.aclose(close_connection_pool=True)
            raise self._error("cannot connect", error) from error
        self._client = client
        self._claim, self._complete, self._release = claim, complete, release

    async def claim(self, namespace: str, key: str, *, lease: float) -> Claim:
        token = new_token()
        reply = await self._call(self._claim, self._key(namespace, key), token, _millis(lease), DONE)
        state, pttl = int(reply[0]), int(reply[1])
        if state == _CLAIMED:
            return Claim(ClaimState.CLAIMED, token)
        if state == _DONE:
            return Claim(ClaimState.DONE)
        return Claim(ClaimState.IN_PROGRESS, retry_after=pttl / 1000 if pttl > 0 else None)

    async def complete(self, namespace: str, key: str, token: str, *, ttl: float) -> None:
        await self._call(self._complete, self._key(namespace, key), token, DONE, _millis(ttl))

    async def release(self, namespace: str, key: str, token: str) -> None:
        await self._call(self._release, self._key(namespace, key), token)

    async def close(self) -> None:
        client, self._client = self._client, None
        self._claim = self._complete = self._release = None
        if client is not None:
            try:
                await client.aclose(close_connection_pool=True)
            except (RedisError, OSError) as error:
                raise self._error("cannot close", error) from error

    def _key(self, namespace: str, key: str) -> str:
        return f"{self._config.prefix}{namespace}:{key}"

    async def _call(self, script: AsyncScript | None, key: str, *args: str | int) -> Any:
        if script is None:
            raise IdempotencyStoreError(f"Redis idempotency store {self._where} is not started")
        try:
            return await script(keys=[key], args=args)
        except (RedisError, OSError) as error:
            raise self._error("failed", error) from error

    def _error(self, what: str, error: BaseException) -> IdempotencyStoreError:
        return IdempotencyStoreError(f"Redis idempotency store {self._where} {what}: {error}")


def redacted(url: str) -> str:
    """``url`` without its password (user info keeps the user name) and query (which may carry one)."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port
    except ValueError:
        return "<invalid redis url>"
    if ":" in host:
        host = f"[{host}]"
    netloc = host if port is None else f"{host}:{port}"
    if parts.username:
        netloc = f"{parts.username}:***@{netloc}" if parts.password else f"{parts.username}@{netloc}"
    elif parts.password:
        netloc = f":***@{netloc}"
    return f"{parts.scheme}://{netloc}{parts.path}"


def _millis(seconds: float) -> int:
    # Redis expiries are whole milliseconds and must be positive.
    return max(1, round(seconds * 1000))
