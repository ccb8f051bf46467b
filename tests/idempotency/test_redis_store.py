"""The Redis store: the store contract on the run's Redis, expiries on every key, one atomic round trip
per claim, and outages raised as the store error naming the server (never its password) in bounded
time."""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit

import pytest
from pydantic import SecretStr
from redis.asyncio import Redis

from listeners.exceptions import IdempotencyStoreError
from listeners.idempotency.config import RedisStoreConfig
from listeners.idempotency.redis import DONE, RedisIdempotencyStore, redacted
from listeners.idempotency.store import ClaimState
from tests.idempotency.store_suite import StoreSuite

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


class TestRedisStore(StoreSuite):
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
