"""Every store behind real listeners: chosen in config, duplicates skipped, and concurrent duplicates on
two consumers of a real RabbitMQ queue giving exactly one effect."""

from __future__ import annotations

import asyncio
import json
import sys
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from dependency_injector import providers

from listeners import Claim, ClaimState, IdempotencyStore, Message, kafka_listener, rabbit_listener
from listeners.clock import SystemClock
from listeners.idempotency.config import IdempotencySettings
from listeners.idempotency.registry import IdempotencyStores
from listeners.testing import running
from tests.contract.configs import unique
from tests.support.apps import app_with

STORES = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("redis", id="redis", marks=pytest.mark.redis),
    pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
]


@pytest.fixture
def store_settings(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, Any]:
    """``listeners.idempotency`` overrides for the store under test, isolated per test."""
    kind = request.param
    suffix = uuid.uuid4().hex[:10]
    settings: dict[str, Any] = {"listeners.idempotency.store": kind}
    if kind == "sqlite":
        settings["listeners.idempotency.sqlite.path"] = str(tmp_path / "keys.db")
    elif kind == "redis":
        settings["listeners.idempotency.redis.url"] = request.getfixturevalue("redis")
        settings["listeners.idempotency.redis.prefix"] = f"test:{suffix}:"
    else:
        settings["listeners.idempotency.postgres.dsn"] = request.getfixturevalue("postgres")
        settings["listeners.idempotency.postgres.table"] = f"listeners_idem_apps_{suffix}"
    return settings


@pytest.fixture
async def cleanup_postgres_table(store_settings: dict[str, Any]) -> AsyncIterator[None]:
    yield
    table = store_settings.get("listeners.idempotency.postgres.table")
    if table:
        import asyncpg

        connection = await asyncpg.connect(store_settings["listeners.idempotency.postgres.dsn"])
        try:
            await connection.execute(f'DROP TABLE IF EXISTS "{table}"')
        finally:
            await connection.close()


class CountingStore:
    """The configured store, counting the claims that found the key in progress elsewhere."""

    def __init__(self, store: IdempotencyStore) -> None:
        self._store = store
        self.in_progress = 0
        self.met = asyncio.Event()

    async def start(self) -> None:
        await self._store.start()

    async def claim(self, namespace: str, key: str, *, lease: float) -> Claim:
        claim = await self._store.claim(namespace, key, lease=lease)
        if claim.state is ClaimState.IN_PROGRESS:
            self.in_progress += 1
            self.met.set()
        return claim

    async def complete(self, namespace: str, key: str, token: str, *, ttl: float) -> None:
        await self._store.complete(namespace, key, token, ttl=ttl)

    async def release(self, namespace: str, key: str, token: str) -> None:
        await self._store.release(namespace, key, token)

    async def close(self) -> None:
        await self._store.close()


@pytest.mark.parametrize("store_settings", STORES, indirect=True)
@pytest.mark.usefixtures("cleanup_postgres_table")
async def test_the_configured_store_skips_duplicates(store_settings: dict[str, Any]) -> None:
    topic = unique("idem-store")

    class Handlers:
        handled: list[str] = []

        @kafka_listener(topic, id="charger", idempotency_key="id")
        async def handle(self, payment: dict[str, str]) -> None:
            self.handled.append(payment["id"])

    async with running(app_with(Handlers()), overrides=store_settings) as app:
        for payment_id in ("a", "b", "a", "a"):
            await app.kafka.send(topic, {"id": payment_id}, key=payment_id)
        stats = app.stats("charger")
        await app.wait_for(lambda: (stats.processed, stats.duplicates_skipped) == (2, 2), timeout=10)
    assert sorted(Handlers.handled) == ["a", "b"]


@pytest.mark.rabbit
@pytest.mark.parametrize("store_settings", STORES, indirect=True)
@pytest.mark.usefixtures("cleanup_postgres_table")
async def test_concurrent_duplicates_on_two_consumers_have_one_effect(
    store_settings: dict[str, Any], rabbit: str
) -> None:
    queue = unique("idem-two")
    settings = IdempotencySettings.model_validate(
        {k.removeprefix("listeners.idempotency."): v for k, v in _nested(store_settings).items()}
    )
    counting = CountingStore(IdempotencyStores(settings, SystemClock()).create(settings.store))

    class Handlers:
        effects: list[int] = []

        @rabbit_listener(queue, id="two", concurrency=2, prefetch=1, idempotency_key="id")
        async def handle(self, item: dict[str, str], message: Message) -> None:
            # The first holds the key until the second consumer found it in progress: a real race.
            await asyncio.wait_for(counting.met.wait(), timeout=10)
            self.effects.append(1)

    overrides = {"listeners.rabbit.url": rabbit, **store_settings}
    container = app_with(Handlers())
    container.idempotency_store.override(providers.Object(counting))
    async with running(container, embedded=False, overrides=overrides) as app:
        await app.rabbit.publish("", queue, {"id": "same"})
        await app.rabbit.publish("", queue, {"id": "same"})
        stats = app.stats("two")
        await app.wait_for(lambda: (stats.processed, stats.duplicates_skipped) == (1, 1), timeout=20)
    assert Handlers.effects == [1]
    assert counting.in_progress >= 1, "the second consumer met the first one's claim"


def _nested(flat: dict[str, Any]) -> dict[str, Any]:
    """``{"listeners.idempotency.redis.url": u}`` -> ``{"listeners.idempotency.redis": {"url": u}}``."""
    nested: dict[str, Any] = {}
    for path, value in flat.items():
        head, _, leaf = path.rpartition(".")
        if head == "listeners.idempotency":
            nested[path] = value
        else:
            nested.setdefault(head, {})[leaf] = value
    return nested


CLAIM_AND_DIE = """
import asyncio, os, signal, sys
from listeners.clock import SystemClock
from listeners.idempotency.config import IdempotencySettings
from listeners.idempotency.registry import IdempotencyStores

async def main() -> None:
    settings = IdempotencySettings.model_validate_json(sys.argv[1])
    store = await IdempotencyStores(settings, SystemClock()).started(settings.store)
    claim = await store.claim("killed", "order-1", lease=float(sys.argv[2]))
    print(claim.state.value, flush=True)
    os.kill(os.getpid(), signal.SIGKILL)  # no close, no release: the process is simply gone

asyncio.run(main())
"""


@pytest.mark.parametrize("store_settings", STORES, indirect=True)
@pytest.mark.usefixtures("cleanup_postgres_table")
async def test_a_killed_processs_claim_expires_with_its_lease(store_settings: dict[str, Any]) -> None:
    raw = {k.removeprefix("listeners.idempotency."): v for k, v in _nested(store_settings).items()}
    settings = IdempotencySettings.model_validate(raw)
    lease = 1.0
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", CLAIM_AND_DIE, json.dumps(raw), str(lease),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(process.communicate(), timeout=60)
    killed_at = time.monotonic()
    assert process.returncode == -9, err.decode()
    assert out.decode().strip() == "claimed"
    store = IdempotencyStores(settings, SystemClock()).create(settings.store)
    await store.start()
    try:
        held = await store.claim("killed", "order-1", lease=30)
        assert held.state is ClaimState.IN_PROGRESS, "the dead process's lease still holds the key"
        await asyncio.sleep(max(0.0, lease + 0.3 - (time.monotonic() - killed_at)))
        taken = await store.claim("killed", "order-1", lease=30)
        assert taken.state is ClaimState.CLAIMED, "its lease ran out: the redelivery can run"
    finally:
        await store.close()
