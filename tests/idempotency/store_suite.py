"""What every idempotency store must do, written once: ``class TestX(StoreSuite)`` with a ``store``
fixture runs it on one store. Leases and TTLs are short real durations, so the same suite runs on
stores whose clock is the server's (Redis, PostgreSQL)."""

from __future__ import annotations

import asyncio
import uuid

from listeners.idempotency.store import BatchingStore, ClaimState, IdempotencyStore

SHORT = 0.3
"""Seconds a short lease or TTL lasts in these tests."""
PAST_SHORT = 0.6
LONG = 60.0


def namespace() -> str:
    return f"listener-{uuid.uuid4().hex[:10]}"


class StoreSuite:
    async def test_a_free_key_is_claimed_and_then_in_progress(self, store: IdempotencyStore) -> None:
        ns = namespace()
        first = await store.claim(ns, "order-1", lease=LONG)
        assert first.state is ClaimState.CLAIMED
        assert first.token
        again = await store.claim(ns, "order-1", lease=LONG)
        assert again.state is ClaimState.IN_PROGRESS
        assert again.token is None
        assert again.retry_after is None or 0 < again.retry_after <= LONG

    async def test_a_completed_key_is_done(self, store: IdempotencyStore) -> None:
        ns = namespace()
        claim = await store.claim(ns, "order-2", lease=LONG)
        assert claim.token is not None
        await store.complete(ns, "order-2", claim.token, ttl=LONG)
        assert (await store.claim(ns, "order-2", lease=LONG)).state is ClaimState.DONE

    async def test_a_released_key_can_be_claimed_again(self, store: IdempotencyStore) -> None:
        ns = namespace()
        claim = await store.claim(ns, "order-3", lease=LONG)
        assert claim.token is not None
        await store.release(ns, "order-3", claim.token)
        again = await store.claim(ns, "order-3", lease=LONG)
        assert again.state is ClaimState.CLAIMED
        assert again.token != claim.token

    async def test_an_expired_lease_frees_the_key_and_its_old_token_changes_nothing(
        self, store: IdempotencyStore
    ) -> None:
        ns = namespace()
        dead = await store.claim(ns, "order-4", lease=SHORT)
        assert dead.token is not None
        await asyncio.sleep(PAST_SHORT)
        taken = await store.claim(ns, "order-4", lease=LONG)
        assert taken.state is ClaimState.CLAIMED
        await store.complete(ns, "order-4", dead.token, ttl=LONG)  # the process that lost its lease
        await store.release(ns, "order-4", dead.token)
        assert (await store.claim(ns, "order-4", lease=LONG)).state is ClaimState.IN_PROGRESS

    async def test_a_done_key_is_forgotten_after_its_ttl(self, store: IdempotencyStore) -> None:
        ns = namespace()
        claim = await store.claim(ns, "order-5", lease=LONG)
        assert claim.token is not None
        await store.complete(ns, "order-5", claim.token, ttl=SHORT)
        assert (await store.claim(ns, "order-5", lease=LONG)).state is ClaimState.DONE
        await asyncio.sleep(PAST_SHORT)
        assert (await store.claim(ns, "order-5", lease=LONG)).state is ClaimState.CLAIMED

    async def test_a_wrong_token_neither_completes_nor_releases(self, store: IdempotencyStore) -> None:
        ns = namespace()
        claim = await store.claim(ns, "order-6", lease=LONG)
        assert claim.token is not None
        await store.complete(ns, "order-6", "not-the-token", ttl=LONG)
        await store.release(ns, "order-6", "not-the-token")
        assert (await store.claim(ns, "order-6", lease=LONG)).state is ClaimState.IN_PROGRESS

    async def test_namespaces_keep_listeners_apart(self, store: IdempotencyStore) -> None:
        one, other = namespace(), namespace()
        claim = await store.claim(one, "order-7", lease=LONG)
        assert claim.token is not None
        await store.complete(one, "order-7", claim.token, ttl=LONG)
        assert (await store.claim(other, "order-7", lease=LONG)).state is ClaimState.CLAIMED

    async def test_concurrent_claims_of_one_key_give_one_holder(self, store: IdempotencyStore) -> None:
        ns = namespace()
        claims = await asyncio.gather(*(store.claim(ns, "order-8", lease=LONG) for _ in range(20)))
        states = [claim.state for claim in claims]
        assert states.count(ClaimState.CLAIMED) == 1
        assert states.count(ClaimState.IN_PROGRESS) == 19

    async def test_any_key_text_is_a_key(self, store: IdempotencyStore) -> None:
        ns = namespace()
        keys = ["a:b:c", "ключ-💡", "x" * 1000, "with space", "quote'\"", "%_*?[]"]
        for key in keys:
            claim = await store.claim(ns, key, lease=LONG)
            assert claim.state is ClaimState.CLAIMED, key
            assert claim.token is not None
            await store.complete(ns, key, claim.token, ttl=LONG)
        for key in keys:
            assert (await store.claim(ns, key, lease=LONG)).state is ClaimState.DONE, key
        assert (await store.claim(ns, "a:b", lease=LONG)).state is ClaimState.CLAIMED, "no prefix match"

    async def test_a_live_claim_is_extended_and_a_lost_one_is_not(self, store: IdempotencyStore) -> None:
        ns = namespace()
        claim = await store.claim(ns, "order-9", lease=SHORT)
        assert claim.token is not None
        assert await store.extend(ns, "order-9", claim.token, lease=LONG)
        await asyncio.sleep(PAST_SHORT)  # past the first lease, within the extended one
        assert (await store.claim(ns, "order-9", lease=LONG)).state is ClaimState.IN_PROGRESS
        assert not await store.extend(ns, "order-9", "not-the-token", lease=LONG)
        await store.complete(ns, "order-9", claim.token, ttl=LONG)
        assert not await store.extend(ns, "order-9", claim.token, lease=LONG), "done, not held"
        assert (await store.claim(ns, "order-9", lease=LONG)).state is ClaimState.DONE

    async def test_an_expired_claim_is_not_extended(self, store: IdempotencyStore) -> None:
        ns = namespace()
        claim = await store.claim(ns, "order-10", lease=SHORT)
        assert claim.token is not None
        await asyncio.sleep(PAST_SHORT)
        assert not await store.extend(ns, "order-10", claim.token, lease=LONG), "another may hold it now"


class BatchingStoreSuite:
    """What a :class:`~listeners.idempotency.store.BatchingStore` adds: many claims and completes per call,
    each answered as the lone call would be, in order."""

    async def test_a_batch_of_claims_answers_each_key_in_order(self, store: IdempotencyStore) -> None:
        assert isinstance(store, BatchingStore)
        ns = namespace()
        held = await store.claim(ns, "held", lease=LONG)
        done = await store.claim(ns, "done", lease=LONG)
        assert held.token is not None
        assert done.token is not None
        await store.complete(ns, "done", done.token, ttl=LONG)

        keys = ["free-1", "held", "done", "free-2", "held", "free-1"]
        claims = await store.claim_many(ns, keys, lease=LONG)
        assert [claim.state for claim in claims] == [
            ClaimState.CLAIMED,
            ClaimState.IN_PROGRESS,
            ClaimState.DONE,
            ClaimState.CLAIMED,
            ClaimState.IN_PROGRESS,
            ClaimState.IN_PROGRESS,  # claimed by this batch's first entry
        ]
        assert claims[0].token
        assert claims[3].token
        assert claims[0].token != claims[3].token
        assert all(claim.token is None for claim in claims[1:3] + claims[4:])
        assert all(claim.retry_after is None or 0 < claim.retry_after <= LONG for claim in claims[1::4])

        # The tokens are the keys' own: completing with them works, with another does not.
        completes = [("free-1", str(claims[0].token)), ("free-2", "not-its-token")]
        await store.complete_many(ns, completes, ttl=LONG)
        again = await store.claim_many(ns, ["free-1", "free-2"], lease=LONG)
        assert [claim.state for claim in again] == [ClaimState.DONE, ClaimState.IN_PROGRESS]
        await store.release(ns, "free-2", str(claims[3].token))
        assert (await store.claim(ns, "free-2", lease=LONG)).state is ClaimState.CLAIMED

    async def test_an_empty_batch_is_no_call(self, store: IdempotencyStore) -> None:
        assert isinstance(store, BatchingStore)
        assert await store.claim_many(namespace(), [], lease=LONG) == []
        await store.complete_many(namespace(), [], ttl=LONG)
