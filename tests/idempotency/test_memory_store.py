"""The in-memory store: the store contract, and expiry on the application clock."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from listeners import ManualClock
from listeners.idempotency.memory import MemoryIdempotencyStore
from listeners.idempotency.store import ClaimState
from tests.idempotency.store_suite import BatchingStoreSuite, StoreSuite


class TestMemoryStore(StoreSuite, BatchingStoreSuite):
    @pytest.fixture
    async def store(self) -> AsyncIterator[MemoryIdempotencyStore]:
        store = MemoryIdempotencyStore()
        yield store
        await store.close()


async def test_leases_and_ttls_run_on_the_injected_clock() -> None:
    clock = ManualClock()
    store = MemoryIdempotencyStore(clock)
    claim = await store.claim("l", "k", lease=30)
    assert claim.token is not None
    await clock.advance(29.9)
    assert (await store.claim("l", "k", lease=30)).retry_after == pytest.approx(0.1)
    await clock.advance(0.1)
    second = await store.claim("l", "k", lease=30)
    assert second.state is ClaimState.CLAIMED
    assert second.token is not None
    await store.complete("l", "k", second.token, ttl=3600)
    await clock.advance(3599)
    assert (await store.claim("l", "k", lease=30)).state is ClaimState.DONE
    await clock.advance(1)
    assert (await store.claim("l", "k", lease=30)).state is ClaimState.CLAIMED


async def test_expired_entries_are_swept_so_memory_stays_bounded() -> None:
    clock = ManualClock()
    store = MemoryIdempotencyStore(clock)
    for index in range(1000):
        claim = await store.claim("l", f"old-{index}", lease=30)
        assert claim.token is not None
        await store.complete("l", f"old-{index}", claim.token, ttl=60)
    await clock.advance(61)
    for index in range(1100):
        await store.claim("l", f"new-{index}", lease=30)
    assert len(store) == 1100, "the expired keys were swept"
