"""An idempotency store in Redis (redis.asyncio), shared by every instance that reaches the server.

Each key is one string, ``<prefix><namespace>:<key>`` (``%`` and ``:`` in the namespace escaped as
``%25`` and ``%3A``), whose value is the claim token while in
progress and ``done`` once completed; it always carries an expiry (the lease, then the TTL), so
Redis never keeps a key forever. Every operation is one Lua script, hence one round trip and atomic:

- claim: ``SET key token NX PX lease``; if the key exists, answer whether it is done or in progress
  (with its PTTL). Doing the read in the same script closes the window in which the key could expire
  between a failed ``SET NX`` and a separate ``GET``.
- complete: if the value is the caller's token, ``SET key done PX ttl``.
- release: if the value is the caller's token, ``DEL key``.
- extend: if the value is the caller's token, ``PEXPIRE key lease`` (a lease that ran out is gone).

Leases and TTLs run on the Redis server's clock.

Calls issued in the same event-loop turn (the claims of messages handed out together, the completes of
handlers that finished together) are coalesced into one round trip: the first call of a turn schedules
a flush with ``loop.call_soon`` (no timer), the calls made before it runs join its batch, and the flush
sends them as ONE ``EVALSHA`` of a batch script that runs each call's operation in turn, in the order
they were made, and answers each caller from its own reply. Each operation is the same as its lone
script (a batch script runs atomically as a whole, so it is at least as atomic), and an error in one
operation (a key of another type) fails that caller only; batching changes how many round trips the
calls take, never what they do. A turn with one call sends one ``EVALSHA`` of its own script; a call
cancelled before its turn's flush is not sent. :meth:`RedisIdempotencyStore.claim_many` and
:meth:`~RedisIdempotencyStore.complete_many` join the same batches.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.commands.core import AsyncScript
from redis.exceptions import RedisError

from listeners.exceptions import IdempotencyStoreError
from listeners.idempotency.config import RedisStoreConfig
from listeners.idempotency.store import Claim, ClaimState, token_base

DONE = "done"
"""The value of a completed key; tokens are hex, so no token equals it."""
MAX_CONNECTIONS = 64
"""Connections one store opens at most; an operation waits up to ``timeout`` for a free one."""
MAX_BATCH = 512
"""Calls one batch carries at most; more calls in the same turn start another batch (another round
trip); it also bounds how long one batch script keeps the server busy."""

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
# KEYS[1] key; ARGV[1] token, ARGV[2] lease (ms) -> 1 if extended.
EXTEND_SCRIPT = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""
# ARGV[1] done marker, ARGV[2] the calls as a JSON array, one entry per caller: [operation (c claim,
# d complete, r release, e extend), lease or ttl (ms), key prefix, [keys], tokens] where tokens is one
# base for a claim (the i-th key's token is the base followed by i - 1 in hex, see ``token_base``)
# and a list for the others -> one reply per caller: a character per key (a claim's state, 1 2 3;
# the others' 1 or 0; ! for a failed operation), then one line per in-progress claim (its PTTL) and per
# failed operation (its error), in key order. Each operation is its lone script's, on the time the batch
# started (expiry is judged at a script's start). One JSON argument, keys without their prefix and
# claim tokens made here: redis-py encodes every argument in Python, which cost more than the
# server's work.
BATCH_SCRIPT = """
local done = ARGV[1]
local function run(op, key, token, ms)
  if op == 'c' then
    if redis.call('SET', key, token, 'NX', 'PX', ms) then return '1' end
    if redis.call('GET', key) == done then return '2' end
    return '3', redis.call('PTTL', key)
  end
  if redis.call('GET', key) ~= token then return '0' end
  if op == 'd' then
    redis.call('SET', key, done, 'PX', ms)
  elseif op == 'e' then
    redis.call('PEXPIRE', key, ms)
  else
    redis.call('DEL', key)
  end
  return '1'
end
local replies = {}
for g, call in ipairs(cjson.decode(ARGV[2])) do
  local op, ms, prefix, keys, tokens = call[1], call[2], call[3], call[4], call[5]
  local states, lines = {}, {}
  for i, key in ipairs(keys) do
    local token
    if op == 'c' then token = tokens .. string.format('%x', i - 1) else token = tokens[i] end
    local ok, state, extra = pcall(run, op, prefix .. key, token, ms)
    if not ok then
      local message = state
      if type(state) == 'table' then message = state.err or 'error' end
      state, extra = '!', string.gsub(tostring(message), '\\n', ' ')
    end
    states[i] = state
    if extra then lines[#lines + 1] = extra end
  end
  if #lines > 0 then
    replies[g] = table.concat(states) .. '\\n' .. table.concat(lines, '\\n')
  else
    replies[g] = table.concat(states)
  end
end
return replies
"""

_CLAIM, _COMPLETE, _RELEASE, _EXTEND = "c", "d", "r", "e"


class _Call:
    """One caller's operations of one kind, queued for this turn's round trip."""

    __slots__ = ("future", "keys", "millis", "operation", "prefix", "tokens")

    def __init__(
        self, operation: str, prefix: str, keys: Sequence[str], tokens: str | Sequence[str], millis: int
    ) -> None:
        self.operation = operation
        self.prefix = prefix
        self.keys = keys
        self.tokens = tokens
        """A claim's token base (see ``token_base``), the other operations' tokens."""
        self.millis = millis
        """The lease or ttl."""
        self.future: asyncio.Future[list[Any]] = asyncio.get_running_loop().create_future()
        """The replies, in key order: a claim's ``Claim``, the others' ``1`` or ``0``, a failed
        operation's error."""


class RedisIdempotencyStore:
    """:class:`~listeners.idempotency.store.IdempotencyStore` in Redis (``config.url``).

    Each operation is one ``EVALSHA`` (the scripts are loaded by :meth:`start`; a server that forgot
    them gets them again transparently); operations called in the same event-loop turn share one
    ``EVALSHA`` of the batch script (see the module docstring). Connection errors, timeouts and server errors
    are raised as :class:`~listeners.exceptions.IdempotencyStoreError` naming the server without its
    password; when a round trip fails, every call it carried gets that error.
    """

    def __init__(self, config: RedisStoreConfig) -> None:
        self._config = config
        self._where = redacted(config.url.get_secret_value())
        self._client: Redis | None = None
        self._claim: AsyncScript | None = None
        self._complete: AsyncScript | None = None
        self._release: AsyncScript | None = None
        self._extend: AsyncScript | None = None
        self._batch_script: AsyncScript | None = None
        self._batch: list[_Call] | None = None
        """The calls of this turn, sent by the flush the first of them scheduled."""
        self._batch_operations = 0  # in self._batch
        self._prefixes: dict[str, str] = {}  # namespace -> key prefix
        self._sending: set[asyncio.Task[None]] = set()

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
        extend = client.register_script(EXTEND_SCRIPT)
        batch = client.register_script(BATCH_SCRIPT)
        try:
            await client.ping()
            # Loaded now so the first operations are one EVALSHA each, not EVALSHA + LOAD + EVALSHA.
            for script in (claim, complete, release, extend, batch):
                script.sha = await client.script_load(script.script)
        except (RedisError, OSError) as error:
            await client.aclose(close_connection_pool=True)
            raise self._error("cannot connect", error) from error
        self._client = client
        self._claim, self._complete, self._release = claim, complete, release
        self._extend, self._batch_script = extend, batch

    async def claim(self, namespace: str, key: str, *, lease: float) -> Claim:
        [claim] = await self.claim_many(namespace, (key,), lease=lease)
        return claim

    async def claim_many(self, namespace: str, keys: Sequence[str], *, lease: float) -> list[Claim]:
        return await self._enqueue(_CLAIM, namespace, keys, token_base(), lease)

    async def complete(self, namespace: str, key: str, token: str, *, ttl: float) -> None:
        await self._call(_COMPLETE, namespace, key, token, ttl)

    async def complete_many(self, namespace: str, claims: Sequence[tuple[str, str]], *, ttl: float) -> None:
        keys = [key for key, _ in claims]
        tokens = [token for _, token in claims]
        await self._enqueue(_COMPLETE, namespace, keys, tokens, ttl)

    async def release(self, namespace: str, key: str, token: str) -> None:
        await self._call(_RELEASE, namespace, key, token, 0.001)

    async def extend(self, namespace: str, key: str, token: str, *, lease: float) -> bool:
        return int(await self._call(_EXTEND, namespace, key, token, lease)) == 1

    async def close(self) -> None:
        if self._batch is not None:  # calls of this turn not flushed yet
            self._flush_turn(self._batch)
        if self._sending:  # let round trips already on the wire answer their callers
            await asyncio.gather(*self._sending, return_exceptions=True)
        client, self._client = self._client, None
        self._claim = self._complete = self._release = self._extend = self._batch_script = None
        if client is not None:
            try:
                await client.aclose(close_connection_pool=True)
            except (RedisError, OSError) as error:
                raise self._error("cannot close", error) from error

    def _prefix(self, namespace: str) -> str:
        # The namespace is escaped so that ':' ends it unambiguously (listener "a", key "b:c" is not
        # listener "a:b", key "c"); keys stay as they are, readable in redis-cli.
        prefix = self._prefixes.get(namespace)
        if prefix is None:
            escaped = namespace.replace("%", "%25").replace(":", "%3A")
            prefix = self._prefixes[namespace] = f"{self._config.prefix}{escaped}:"
        return prefix

    async def _call(self, operation: str, namespace: str, key: str, token: str, seconds: float) -> Any:
        """Run one operation, in one round trip with every other call made in this event-loop turn."""
        return (await self._enqueue(operation, namespace, (key,), (token,), seconds))[0]

    def _enqueue(
        self,
        operation: str,
        namespace: str,
        keys: Sequence[str],
        tokens: str | Sequence[str],
        seconds: float,
    ) -> asyncio.Future[list[Any]]:
        """Add the operations on ``keys`` (one kind) to this turn's batch; the returned future gets
        their replies, in order.

        The first call of a turn schedules the flush (``call_soon``: after the calls of this turn);
        the flush sends the batch through a task that answers every caller, so cancelling one of them
        never leaves the others without a reply.
        """
        if self._client is None:
            raise IdempotencyStoreError(f"Redis idempotency store {self._where} is not started")
        call = _Call(operation, self._prefix(namespace), keys, tokens, _millis(seconds))
        if not keys:
            call.future.set_result([])
            return call.future
        batch = self._batch
        if batch is None:
            batch = self._batch = []
            self._batch_operations = 0
            asyncio.get_running_loop().call_soon(self._flush_turn, batch)
        batch.append(call)
        self._batch_operations += len(keys)
        if self._batch_operations >= MAX_BATCH:
            self._batch = None  # full: its flush sends it; later calls start another
        return call.future

    def _flush_turn(self, batch: list[_Call]) -> None:
        if self._batch is batch:
            self._batch = None
        wanted = [call for call in batch if not call.future.done()]  # cancelled meanwhile: not sent
        batch.clear()  # sent once, whether by its scheduled flush or by close()
        if wanted:
            self._flush(wanted)

    def _flush(self, batch: list[_Call]) -> None:
        task = asyncio.get_running_loop().create_task(self._send(batch))
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    async def _send(self, batch: list[_Call]) -> None:
        """One round trip for ``batch``; answers every caller (a caller that was cancelled is skipped).

        If the round trip fails (connection, timeout, server), every caller gets the store error.
        """
        try:
            replies: list[list[Any] | IdempotencyStoreError]
            if len(batch) == 1 and len(batch[0].keys) == 1:
                replies = [await self._one(batch[0])]
            else:
                replies = await self._many(batch)
        except BaseException as error:
            for call in batch:
                if not call.future.done():
                    call.future.set_exception(self._failure(error))
            if not isinstance(error, (RedisError, OSError, IdempotencyStoreError)):
                raise
            return
        for call, reply in zip(batch, replies, strict=True):
            if call.future.done():
                continue
            if isinstance(reply, IdempotencyStoreError):
                call.future.set_exception(reply)
            else:
                call.future.set_result(reply)

    async def _one(self, call: _Call) -> list[Any]:
        """A lone operation: one ``EVALSHA`` of its own script."""
        operation, millis, key = call.operation, call.millis, call.prefix + call.keys[0]
        args: tuple[str | int, ...]
        if operation == _CLAIM:
            token = f"{call.tokens}0"
            reply = await self._script(self._claim)(keys=[key], args=(token, millis, DONE))
            return [_claim(reply, token)]
        token = call.tokens[0]
        if operation == _COMPLETE:
            script, args = self._complete, (token, DONE, millis)
        elif operation == _EXTEND:
            script, args = self._extend, (token, millis)
        else:
            script, args = self._release, (token,)
        return [await self._script(script)(keys=[key], args=args)]

    async def _many(self, batch: list[_Call]) -> list[list[Any] | IdempotencyStoreError]:
        """Several calls: one ``EVALSHA`` of the batch script; each call's replies (or its error), in
        order."""
        calls = json.dumps(
            [[call.operation, call.millis, call.prefix, call.keys, call.tokens] for call in batch],
            ensure_ascii=False,
        )
        replies = await self._script(self._batch_script)(keys=[], args=[DONE, calls])
        if not isinstance(replies, list) or len(replies) != len(batch):
            raise IdempotencyStoreError(
                f"Redis idempotency store {self._where} answered {replies!r:.80} to {len(batch)} calls"
            )
        return [self._replies(call, str(reply)) for call, reply in zip(batch, replies, strict=True)]

    def _replies(self, call: _Call, reply: str) -> list[Any] | IdempotencyStoreError:
        """One call's replies from its entry of the batch script's answer (see ``BATCH_SCRIPT``), or the
        error of its first failed operation."""
        count = len(call.keys)
        states = reply[:count]
        if len(states) != count:
            return IdempotencyStoreError(
                f"Redis idempotency store {self._where} answered {len(states)} replies to {count} operations"
            )
        lines = reply[count + 1 :].split("\n")
        if "!" in states:
            return self._error("failed", lines[[state for state in states if state in "3!"].index("!")])
        if call.operation != _CLAIM:
            return list(map(int, states))
        base = call.tokens
        if len(reply) == count and states.count("1") == count:  # every key claimed: the common answer
            return [Claim(ClaimState.CLAIMED, f"{base}{index:x}") for index in range(count)]
        waits = iter(lines)
        return [
            Claim(ClaimState.CLAIMED, f"{base}{index:x}")
            if state == "1"
            else _DONE_CLAIM
            if state == "2"
            else _in_progress(int(next(waits)))
            for index, state in enumerate(states)
        ]

    def _script(self, script: AsyncScript | None) -> AsyncScript:
        if script is None:
            raise IdempotencyStoreError(f"Redis idempotency store {self._where} is not started")
        return script

    def _failure(self, error: BaseException) -> IdempotencyStoreError:
        """The error one caller of a failed round trip gets (each its own instance)."""
        if isinstance(error, IdempotencyStoreError):
            return IdempotencyStoreError(str(error))
        failure = self._error("failed", error)
        failure.__cause__ = error
        return failure

    def _error(self, what: str, error: BaseException | str) -> IdempotencyStoreError:
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


_DONE_CLAIM = Claim(ClaimState.DONE)


def _claim(reply: Any, token: str) -> Claim:
    """A claim from the lone claim script's reply ``[state, pttl]``."""
    state, pttl = int(reply[0]), int(reply[1])
    if state == _CLAIMED:
        return Claim(ClaimState.CLAIMED, token)
    if state == _DONE:
        return _DONE_CLAIM
    return _in_progress(pttl)


def _in_progress(pttl: int) -> Claim:
    return Claim(ClaimState.IN_PROGRESS, retry_after=pttl / 1000 if pttl > 0 else None)


def _millis(seconds: float) -> int:
    # Redis expiries are whole milliseconds and must be positive.
    return max(1, round(seconds * 1000))
