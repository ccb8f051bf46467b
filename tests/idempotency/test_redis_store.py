"""The Redis store: the store contract on the run's Redis, expiries on every key, one atomic round trip
per claim, calls made together sharing one round trip, and outages raised as the store error naming
the server (never its password) in bounded time."""

from __future__ import annotations

import asyncio
import json
import re
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit

import pytest
from pydantic import SecretStr
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError

from listeners.exceptions import IdempotencyStoreError
from listeners.idempotency.config import RedisStoreConfig
from listeners.idempotency.redis import DONE, MAX_BATCH, RedisIdempotencyStore, redacted
from listeners.idempotency.store import ClaimState
from tests.idempotency.store_suite import BatchingStoreSuite, StoreSuite

pytestmark = pytest.mark.redis

Factory = Callable[..., Awaitable[RedisIdempotencyStore]]


@pytest.fixture
async def client(redis: str) -> AsyncIterator[Redis]:
    """A plain client on the run's Redis, to look at the keys the store wrote."""
    client = Redis.from_url(redis, decode_responses=True)
    yield client
    await client.aclose()


@pytest.fixture
def prefix() -> str:
    return f"listeners-test:{uuid.uuid4().hex}:"


@pytest.fixture
async def make_store(redis: str, prefix: str, client: Redis) -> AsyncIterator[Factory]:
    """Starts stores on the run's Redis under this test's prefix; closes them and deletes the keys after."""
    stores: list[RedisIdempotencyStore] = []

    async def make(url: str = redis, timeout: float = 2.0) -> RedisIdempotencyStore:
        store = RedisIdempotencyStore(RedisStoreConfig(url=SecretStr(url), prefix=prefix, timeout=timeout))
        stores.append(store)
        await store.start()
        return store

    yield make
    for store in stores:
        await store.close()
    keys = [key async for key in client.scan_iter(match=f"{prefix}*")]
    if keys:
        await client.delete(*keys)


class TestRedisStore(StoreSuite, BatchingStoreSuite):
    @pytest.fixture
    async def store(self, make_store: Factory) -> RedisIdempotencyStore:
        return await make_store()


class SilentProxy:
    """A TCP proxy to Redis that can stop answering (a network partition, not a refused connection)."""

    def __init__(self, target: str) -> None:
        parts = urlsplit(target)
        self._target = (parts.hostname or "127.0.0.1", parts.port or 6379)
        self._db = parts.path
        self.silent = False
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def __aenter__(self) -> SilentProxy:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *_: object) -> None:
        assert self._server is not None
        self._server.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    @property
    def url(self) -> str:
        assert self._server is not None
        port = self._server.sockets[0].getsockname()[1]
        return f"redis://:hunter2@127.0.0.1:{port}{self._db}"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream_reader, upstream_writer = await asyncio.open_connection(*self._target)
        for source, sink in ((reader, upstream_writer), (upstream_reader, writer)):
            task = asyncio.create_task(self._pipe(source, sink))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _pipe(self, source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        try:
            while data := await source.read(65536):
                if not self.silent:
                    sink.write(data)
                    await sink.drain()
        finally:
            sink.close()


async def test_keys_are_the_prefix_namespace_and_key_and_always_expire(
    make_store: Factory, client: Redis, prefix: str
) -> None:
    store = await make_store()
    claim = await store.claim("orders", "o:1", lease=30)
    assert claim.token is not None
    name = f"{prefix}orders:o:1"
    assert await client.get(name) == claim.token
    assert 0 < await client.pttl(name) <= 30_000, "an in-progress key expires with its lease"
    await store.complete("orders", "o:1", claim.token, ttl=3600)
    assert await client.get(name) == DONE
    assert 30_000 < await client.pttl(name) <= 3_600_000, "a done key expires with its TTL"
    second = await store.claim("orders", "o:2", lease=30)
    assert second.token is not None
    await store.release("orders", "o:2", second.token)
    assert await client.exists(f"{prefix}orders:o:2") == 0, "a released key is deleted"


async def test_retry_after_is_what_is_left_of_the_holders_lease(make_store: Factory) -> None:
    store = await make_store()
    await store.claim("l", "k", lease=60)
    in_progress = await store.claim("l", "k", lease=60)
    assert in_progress.state is ClaimState.IN_PROGRESS
    assert in_progress.retry_after is not None
    assert 59 < in_progress.retry_after <= 60


async def test_each_operation_is_one_round_trip(make_store: Factory, monkeypatch: pytest.MonkeyPatch) -> None:
    """A claim of a held key reads it in the same script as the failed SET NX: no window in which the
    key could expire between the two (which would report it in progress when it is free)."""
    store = await make_store()
    commands: list[str] = []
    send = Redis.execute_command

    async def counting(self: Redis, *args: Any, **options: Any) -> Any:
        commands.append(str(args[0]))
        return await send(self, *args, **options)

    monkeypatch.setattr(Redis, "execute_command", counting)
    first = await store.claim("l", "k", lease=60)
    assert first.token is not None
    assert (await store.claim("l", "k", lease=60)).state is ClaimState.IN_PROGRESS
    await store.complete("l", "k", first.token, ttl=60)
    assert (await store.claim("l", "k", lease=60)).state is ClaimState.DONE
    await store.release("l", "k", "someone-else")
    assert commands == ["EVALSHA"] * 5


@pytest.fixture
def commands(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, int]]:
    """Every command any client sends from now on, as (name, number of calls of an EVALSHA): one entry
    per round trip (the store sends no pipelines). A lone call's script takes its one key; the batch
    script takes none, its callers' calls being a JSON array in its last argument (each caller's keys
    are its entry's fourth item)."""
    sent: list[tuple[str, int]] = []
    send = Redis.execute_command

    def calls(args: tuple[Any, ...]) -> int:
        if args[0] != "EVALSHA":
            return 0
        keys = int(args[2])
        return keys if keys else sum(len(call[3]) for call in json.loads(args[-1]))

    async def counting(self: Redis, *args: Any, **options: Any) -> Any:
        sent.append((str(args[0]), calls(args)))
        return await send(self, *args, **options)

    monkeypatch.setattr(Redis, "execute_command", counting)
    return sent


async def test_calls_made_together_share_one_round_trip(
    make_store: Factory, client: Redis, prefix: str, commands: list[tuple[str, int]]
) -> None:
    store = await make_store()
    commands.clear()  # what starting the store sent
    keys = [f"o:{index}" for index in range(50)]
    claims = await asyncio.gather(*(store.claim("l", key, lease=60) for key in keys))
    assert commands == [("EVALSHA", 50)], "50 claims of one turn: one round trip"
    assert all(claim.state is ClaimState.CLAIMED for claim in claims)
    assert len({claim.token for claim in claims}) == 50
    assert await client.mget([f"{prefix}l:{key}" for key in keys]) == [claim.token for claim in claims]
    assert 0 < await client.pttl(f"{prefix}l:o:7") <= 60_000

    commands.clear()
    tokens = [claim.token for claim in claims]
    assert all(tokens)
    await asyncio.gather(
        store.complete("l", keys[0], "not-the-token", ttl=3600),
        *(
            store.complete("l", key, str(token), ttl=3600)
            for key, token in zip(keys[1:], tokens[1:], strict=True)
        ),
        store.release("l", keys[0], str(tokens[0])),
    )
    assert commands == [("EVALSHA", 51)], "completes and releases of one turn: one round trip"
    assert await client.exists(f"{prefix}l:{keys[0]}") == 0, "released (the wrong token changed nothing)"
    assert await client.get(f"{prefix}l:o:7") == DONE
    assert 60_000 < await client.pttl(f"{prefix}l:o:7") <= 3_600_000

    commands.clear()
    again = await asyncio.gather(*(store.claim("l", key, lease=60) for key in keys))
    assert [claim.state for claim in again] == [ClaimState.CLAIMED] + [ClaimState.DONE] * 49
    assert commands == [("EVALSHA", 50)]


async def test_extends_made_together_share_one_round_trip(
    make_store: Factory, client: Redis, prefix: str, commands: list[tuple[str, int]]
) -> None:
    store = await make_store()
    claims = await asyncio.gather(*(store.claim("l", f"k{index}", lease=5) for index in range(10)))
    commands.clear()
    tokens = [str(claim.token) for claim in claims]
    extended = await asyncio.gather(
        *(store.extend("l", f"k{index}", token, lease=600) for index, token in enumerate(tokens)),
        store.extend("l", "k0", "not-the-token", lease=600),
        store.extend("l", "never-claimed", "token", lease=600),
    )
    assert commands == [("EVALSHA", 12)]
    assert extended == [True] * 10 + [False, False]
    assert 5_000 < await client.pttl(f"{prefix}l:k3") <= 600_000
    assert await client.exists(f"{prefix}l:never-claimed") == 0


async def test_a_lone_call_is_one_round_trip_of_its_own_script(
    make_store: Factory, commands: list[tuple[str, int]]
) -> None:
    store = await make_store()
    commands.clear()  # what starting the store sent
    for index in range(3):
        claim = await store.claim("l", f"k{index}", lease=60)
        assert claim.token is not None
        await store.complete("l", f"k{index}", claim.token, ttl=60)
    assert commands == [("EVALSHA", 1)] * 6


async def test_more_calls_than_a_batch_holds_take_more_round_trips(
    make_store: Factory, commands: list[tuple[str, int]]
) -> None:
    store = await make_store()
    commands.clear()  # what starting the store sent
    claims = await asyncio.gather(
        *(store.claim("l", f"k{index}", lease=60) for index in range(MAX_BATCH + 3))
    )
    assert all(claim.state is ClaimState.CLAIMED for claim in claims)
    assert commands == [("EVALSHA", MAX_BATCH), ("EVALSHA", 3)]


async def test_concurrent_claims_of_one_key_give_exactly_one_holder(
    make_store: Factory, client: Redis, prefix: str, commands: list[tuple[str, int]]
) -> None:
    store = await make_store()
    commands.clear()  # what starting the store sent
    claims = await asyncio.gather(*(store.claim("l", "same", lease=60) for _ in range(20)))
    assert commands == [("EVALSHA", 20)], "the duplicates were in one batch"
    holders = [claim for claim in claims if claim.state is ClaimState.CLAIMED]
    assert len(holders) == 1
    assert await client.get(f"{prefix}l:same") == holders[0].token
    others = [claim for claim in claims if claim is not holders[0]]
    assert all(claim.state is ClaimState.IN_PROGRESS for claim in others)
    assert all(claim.retry_after is not None and 59 < claim.retry_after <= 60 for claim in others)

    # Two stores (two processes) claiming the same keys, each batching its own claims.
    one, other = store, await make_store()
    keys = [f"shared-{index}" for index in range(100)]
    first, second = await asyncio.gather(
        asyncio.gather(*(one.claim("l", key, lease=60) for key in keys)),
        asyncio.gather(*(other.claim("l", key, lease=60) for key in reversed(keys))),
    )
    second = list(reversed(second))
    for key, mine, theirs in zip(keys, first, second, strict=True):
        states = {mine.state, theirs.state}
        assert states == {ClaimState.CLAIMED, ClaimState.IN_PROGRESS}, key
        holder = mine if mine.state is ClaimState.CLAIMED else theirs
        assert await client.get(f"{prefix}l:{key}") == holder.token


async def test_a_failing_round_trip_fails_every_caller(
    make_store: Factory, client: Redis, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = await make_store()
    send = Redis.execute_command

    async def failing(self: Redis, *args: Any, **options: Any) -> Any:
        if args[0] == "EVALSHA":
            raise RedisConnectionError("connection reset by peer")
        return await send(self, *args, **options)

    monkeypatch.setattr(Redis, "execute_command", failing)
    results = await asyncio.gather(
        *(store.claim("l", f"k{index}", lease=60) for index in range(10)), return_exceptions=True
    )
    assert all(isinstance(result, IdempotencyStoreError) for result in results), results
    assert len({id(result) for result in results}) == 10, "each caller gets its own error"
    assert all("redis://127.0.0.1" in str(result) and "connection reset" in str(result) for result in results)
    monkeypatch.setattr(Redis, "execute_command", send)
    assert (await store.claim("l", "k0", lease=60)).state is ClaimState.CLAIMED, "the store recovers"
    assert await client.exists(*(f"{prefix}l:k{index}" for index in range(1, 10))) == 0


async def test_a_server_that_stops_answering_fails_every_caller_of_a_batch(
    redis: str, make_store: Factory
) -> None:
    async with SilentProxy(redis) as proxy:
        store = await make_store(proxy.url, timeout=0.3)
        proxy.silent = True
        started = time.monotonic()
        results = await asyncio.gather(
            *(store.claim("l", f"k{index}", lease=60) for index in range(10)), return_exceptions=True
        )
        assert time.monotonic() - started < 1.5
        assert all(isinstance(result, IdempotencyStoreError) for result in results), results
        assert all(redacted(proxy.url) in str(result) for result in results)


async def test_one_failing_call_of_a_batch_fails_only_its_caller(
    make_store: Factory, client: Redis, prefix: str
) -> None:
    store = await make_store()
    await client.hset(f"{prefix}l:a-hash", "field", "value")  # not a string: every operation on it fails
    results = await asyncio.gather(
        store.claim("l", "before", lease=60),
        store.claim("l", "a-hash", lease=60),
        store.claim("l", "after", lease=60),
        return_exceptions=True,
    )
    before, failed, after = results
    assert isinstance(failed, IdempotencyStoreError)
    assert "WRONGTYPE" in str(failed)
    for result in (before, after):
        assert not isinstance(result, BaseException)
        assert result.state is ClaimState.CLAIMED


async def test_a_failed_key_in_a_batch_of_claims_fails_that_call_with_its_own_error(
    make_store: Factory, client: Redis, prefix: str
) -> None:
    """The batch script answers in-progress waits and errors on lines after the states, in key order:
    the call gets the error of its failed key (not the wait of the held key before it)."""
    store = await make_store()
    assert (await store.claim("l", "held", lease=60)).state is ClaimState.CLAIMED
    await client.hset(f"{prefix}l:a-hash", "field", "value")
    batch, beside = await asyncio.gather(
        store.claim_many("l", ["free", "held", "a-hash", "other"], lease=60),
        store.claim("l", "beside", lease=60),
        return_exceptions=True,
    )
    assert isinstance(batch, IdempotencyStoreError)
    assert "WRONGTYPE" in str(batch)
    assert not isinstance(beside, BaseException)
    assert beside.state is ClaimState.CLAIMED


async def test_a_caller_cancelled_before_its_batch_left_does_not_hold_up_the_others(
    make_store: Factory, client: Redis, prefix: str
) -> None:
    store = await make_store()
    tasks = [asyncio.create_task(store.claim("l", f"k{index}", lease=60)) for index in range(5)]
    await asyncio.sleep(0)  # every claim has joined the first one's batch, which has not left yet
    tasks[0].cancel()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert isinstance(results[0], asyncio.CancelledError)
    assert all(
        not isinstance(result, BaseException) and result.state is ClaimState.CLAIMED for result in results[1:]
    )
    assert await client.exists(f"{prefix}l:k0") == 0, "the cancelled claim was never sent"


async def test_a_batch_reloads_scripts_the_server_forgot(make_store: Factory, client: Redis) -> None:
    store = await make_store()
    await client.script_flush()
    claims = await asyncio.gather(*(store.claim("l", f"k{index}", lease=60) for index in range(5)))
    assert all(claim.state is ClaimState.CLAIMED for claim in claims)


async def test_a_key_expiring_as_it_is_claimed_is_claimed_or_held_never_lost(
    make_store: Factory, client: Redis, prefix: str
) -> None:
    store = await make_store()
    outcomes: set[ClaimState] = set()
    for index in range(200):
        name = f"{prefix}l:k{index}"
        await client.set(name, "other-token", px=1 + index % 3)
        await asyncio.sleep(0.0005 * (index % 5))
        claim = await store.claim("l", f"k{index}", lease=60)
        outcomes.add(claim.state)
        if claim.state is ClaimState.CLAIMED:
            assert await client.get(name) == claim.token, "the new claim holds the key"
        else:
            assert claim.state is ClaimState.IN_PROGRESS
            assert claim.retry_after is None or claim.retry_after <= 0.003
    assert ClaimState.CLAIMED in outcomes


async def test_an_expired_key_is_claimed(make_store: Factory, client: Redis, prefix: str) -> None:
    store = await make_store()
    await client.set(f"{prefix}l:k", "other-token", px=1)
    await asyncio.sleep(0.01)
    claim = await store.claim("l", "k", lease=60)
    assert claim.state is ClaimState.CLAIMED
    assert await client.get(f"{prefix}l:k") == claim.token


async def test_scripts_the_server_forgot_are_loaded_again(make_store: Factory, client: Redis) -> None:
    store = await make_store()
    await client.script_flush()
    claim = await store.claim("l", "k", lease=60)
    assert claim.token is not None
    await store.complete("l", "k", claim.token, ttl=60)
    assert (await store.claim("l", "k", lease=60)).state is ClaimState.DONE


async def test_an_unreachable_server_fails_start_quickly_naming_it() -> None:
    store = RedisIdempotencyStore(RedisStoreConfig(url=SecretStr("redis://admin:s3cret@127.0.0.1:1/0")))
    started = time.monotonic()
    with pytest.raises(IdempotencyStoreError, match=r"redis://admin:\*\*\*@127\.0\.0\.1:1/0") as raised:
        await store.start()
    assert time.monotonic() - started < 2.0
    assert "s3cret" not in str(raised.value)
    with pytest.raises(IdempotencyStoreError, match="not started"):
        await store.claim("l", "k", lease=60)


async def test_a_server_that_stops_answering_fails_start_and_claims_within_the_timeout(
    redis: str, make_store: Factory
) -> None:
    async with SilentProxy(redis) as proxy:
        where = re.escape(redacted(proxy.url))
        store = await make_store(proxy.url, timeout=0.3)
        claim = await store.claim("l", "k", lease=60)
        assert claim.state is ClaimState.CLAIMED
        proxy.silent = True
        started = time.monotonic()
        with pytest.raises(IdempotencyStoreError, match=where) as raised:
            await store.claim("l", "other", lease=60)
        # One try and one immediate retry, each bounded by the timeout.
        assert time.monotonic() - started < 1.5
        assert "hunter2" not in str(raised.value)
        with pytest.raises(IdempotencyStoreError, match=where):
            await store.complete("l", "k", "token", ttl=60)

        silent_start = RedisIdempotencyStore(RedisStoreConfig(url=SecretStr(proxy.url), timeout=0.3))
        started = time.monotonic()
        with pytest.raises(IdempotencyStoreError, match=where):
            await silent_start.start()
        assert time.monotonic() - started < 1.5


async def test_a_closed_store_raises_the_store_error(make_store: Factory) -> None:
    store = await make_store()
    await store.close()
    with pytest.raises(IdempotencyStoreError, match="not started"):
        await store.claim("l", "k", lease=60)


def test_urls_are_shown_without_passwords() -> None:
    assert redacted("redis://user:pw@host:6380/2?password=pw") == "redis://user:***@host:6380/2"
    assert redacted("rediss://:pw@host/0") == "rediss://:***@host/0"
    assert redacted("redis://127.0.0.1:6379/0") == "redis://127.0.0.1:6379/0"
    assert redacted("unix:///run/redis.sock?db=1") == "unix:///run/redis.sock"


async def test_a_colon_in_a_listener_id_cannot_alias_another_listeners_key(redis: str) -> None:
    prefix = f"test:{uuid.uuid4().hex[:10]}:"
    store = RedisIdempotencyStore(RedisStoreConfig(url=SecretStr(redis), prefix=prefix))
    await store.start()
    try:
        claim = await store.claim("a", "b:c", lease=60)
        assert claim.token is not None
        await store.complete("a", "b:c", claim.token, ttl=60)
        assert (await store.claim("a:b", "c", lease=60)).state is ClaimState.CLAIMED
        assert (await store.claim("a", "b:c", lease=60)).state is ClaimState.DONE
    finally:
        client = Redis.from_url(redis)
        keys = [key async for key in client.scan_iter(match=f"{prefix}*")]
        if keys:
            await client.delete(*keys)
        await client.aclose()
        await store.close()
