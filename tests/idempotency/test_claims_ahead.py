"""Claims ahead: a listener whose store batches claims the keys of the messages it accepted together
in one call before their turns, and marks keys done without holding up its ordering lane.

These run the real container, invoker and guard on the memory store (subclassed to count and hold
its calls) with a recording settler, so each rule is seen at the point it matters: what the store
was asked, when a delivery was acknowledged, what a released delivery left behind.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Annotated, Any

import pytest
from pydantic import BaseModel

from listeners import Header, ManualClock, Message
from listeners.codec.json import JsonCodec
from listeners.exceptions import IdempotencyStoreError
from listeners.idempotency.guard import IdempotencyGuard
from listeners.idempotency.keys import key_reader
from listeners.idempotency.memory import MemoryIdempotencyStore
from listeners.idempotency.store import Claim, ClaimState
from listeners.message import Headers
from listeners.runtime.container import ListenerContainer
from listeners.runtime.invoker import Invoker
from listeners.runtime.parameters import plan_parameters
from listeners.spec import Idempotency, ListenerOptions
from listeners.transport.base import Delivery, Endpoint
from tests.unit.test_listener_container import IdleTransport


class Payment(BaseModel):
    payment_id: str


class CountingStore(MemoryIdempotencyStore):
    """The memory store, recording its batched calls; completes wait while ``hold_completes`` is
    clear, and fail ``failing_completes`` times."""

    def __init__(self) -> None:
        super().__init__()
        self.claim_batches: list[list[str]] = []
        self.single_claims: list[str] = []
        self.complete_batches: list[list[str]] = []
        self.hold_completes = asyncio.Event()
        self.hold_completes.set()
        self.failing_completes = 0

    async def claim_many(self, namespace: str, keys: Sequence[str], *, lease: float) -> list[Claim]:
        self.claim_batches.append(list(keys))
        return [await super(CountingStore, self).claim(namespace, key, lease=lease) for key in keys]

    async def claim(self, namespace: str, key: str, *, lease: float) -> Claim:
        self.single_claims.append(key)
        return await super().claim(namespace, key, lease=lease)

    async def complete_many(self, namespace: str, claims: Sequence[tuple[str, str]], *, ttl: float) -> None:
        self.complete_batches.append([key for key, _ in claims])
        await self.hold_completes.wait()
        if self.failing_completes:
            self.failing_completes -= 1
            raise IdempotencyStoreError("store unreachable (test)")
        await super().complete_many(namespace, claims, ttl=ttl)

    def state(self, key: str) -> ClaimState | None:
        entry = self._entries.get(("l", key))
        if entry is None:
            return None
        return ClaimState.DONE if entry.token is None else ClaimState.IN_PROGRESS


class Settler:
    def __init__(self) -> None:
        self.acked: list[int] = []
        self.released: list[int] = []

    def holds_back_finished(self, delivery: Delivery) -> bool:
        return False

    def ack_now(self, delivery: Delivery) -> bool:
        self.acked.append(_offset(delivery))
        return True

    async def ack(self, delivery: Delivery) -> None:
        self.acked.append(_offset(delivery))

    async def release(self, delivery: Delivery) -> None:
        self.released.append(_offset(delivery))


def _offset(delivery: Delivery) -> int:
    assert delivery.message.offset is not None
    return delivery.message.offset


class Listener:
    """One listener keyed by ``payment_id`` over ``store``; ``handled`` lists the keys it ran."""

    def __init__(self, store: CountingStore, *, gate: asyncio.Event | None = None) -> None:
        self.store = store
        self.settler = Settler()
        self.handled: list[str] = []
        self.gate = gate

        async def handle(payment: Payment) -> None:
            self.handled.append(payment.payment_id)
            if self.gate is not None:
                await self.gate.wait()

        self.guard = IdempotencyGuard("l", store, Idempotency(), key_reader("l", "payment_id"))
        invoker = Invoker(
            listener_id="l",
            handler=handle,
            plan=plan_parameters(handle, "handle", batch=False),
            codec=JsonCodec(),
            executor=ThreadPoolExecutor(1),
            guard=self.guard,
        )
        assert invoker.lookahead is invoker, "a batching store claims ahead"
        endpoint = Endpoint("l", "kafka", ListenerOptions(topics=("t",), ordering="partition"))
        self.container = ListenerContainer(
            endpoint,
            invoker,
            IdleTransport(),  # type: ignore[arg-type]
            ManualClock(),
            lookahead=invoker.lookahead,
        )

    def offer(self, *keys: str, first_offset: int = 0) -> None:
        for offset, key in enumerate(keys, start=first_offset):
            body = Payment(payment_id=key).model_dump_json().encode()
            message = Message(body, Headers(), "t", "l", "kafka", partition=0, offset=offset)
            assert self.container.offer(Delivery(message, self.settler))

    async def until(self, condition: Any, what: str) -> None:
        for _ in range(2000):
            if condition():
                return
            await asyncio.sleep(0)
        raise AssertionError(f"never happened: {what}")


async def started(store: CountingStore, **options: Any) -> Listener:
    listener = Listener(store, **options)
    await listener.container.start()
    return listener


async def test_the_keys_of_messages_accepted_together_are_claimed_in_one_call() -> None:
    store = CountingStore()
    listener = await started(store)
    listener.offer("a", "b", "c", "d")
    await listener.until(lambda: listener.settler.acked == [0, 1, 2, 3], "all acknowledged in order")
    assert store.claim_batches == [["a", "b", "c", "d"]]
    assert store.single_claims == [], "no message claimed on its own"
    assert store.complete_batches == [["a", "b", "c", "d"]], "handled in one turn: marked done together"
    assert listener.handled == ["a", "b", "c", "d"]
    assert all(store.state(key) is ClaimState.DONE for key in "abcd")
    await listener.container.stop(1)


async def test_a_message_is_acknowledged_only_once_its_key_is_done_while_the_lane_goes_on() -> None:
    store = CountingStore()
    store.hold_completes.clear()
    listener = await started(store)
    listener.offer("a", "b")
    await listener.until(lambda: listener.handled == ["a", "b"], "both handled")
    await listener.until(lambda: store.complete_batches, "the complete sent")
    assert listener.settler.acked == [], "not acknowledged before its key is marked done"
    assert listener.container.in_flight == 2
    store.hold_completes.set()
    await listener.until(lambda: listener.settler.acked == [0, 1], "acknowledged once done")
    assert listener.container.stats.processed == 2
    await listener.container.stop(1)


async def test_a_failed_batch_complete_is_retried_key_by_key_before_the_ack() -> None:
    store = CountingStore()
    store.failing_completes = 1
    listener = await started(store)
    listener.offer("a", "b")
    await listener.until(lambda: store.complete_batches, "the batch complete tried")
    assert listener.settler.acked == []
    await asyncio.wait_for(listener.guard.close(), 5)  # waits for the retries (after a back-off)
    await listener.until(lambda: listener.settler.acked == [0, 1], "acknowledged after the retry")
    assert store.state("a") is ClaimState.DONE
    assert store.state("b") is ClaimState.DONE
    await listener.container.stop(1)


async def test_a_key_repeated_in_one_batch_is_handled_once() -> None:
    store = CountingStore()
    listener = await started(store)
    listener.offer("a", "a", "b")
    await listener.until(lambda: len(listener.settler.acked) == 3, "all three acknowledged")
    assert listener.handled == ["a", "b"]
    assert listener.container.stats.duplicates_skipped == 1
    assert store.single_claims == ["a"], "the repeat, found in progress ahead, claimed again at its turn"
    await listener.container.stop(1)


async def test_messages_released_before_their_turn_free_their_keys() -> None:
    store = CountingStore()
    gate = asyncio.Event()
    listener = await started(store, gate=gate)
    listener.offer("a", "b", "c")
    await listener.until(lambda: listener.handled == ["a"], "the first handler running")
    assert store.state("b") is ClaimState.IN_PROGRESS, "claimed ahead while waiting"
    stopping = asyncio.ensure_future(listener.container.stop(5))
    await listener.until(lambda: listener.settler.released == [1, 2], "the waiting ones released")
    gate.set()
    assert await stopping
    await listener.guard.close()
    assert store.state("b") is None, "a released message's key is free for its redelivery"
    assert store.state("c") is None
    assert store.state("a") is ClaimState.DONE
    assert listener.settler.acked == [0]


async def test_a_store_that_fails_the_claims_ahead_falls_back_to_claiming_at_each_turn() -> None:
    class FailingAhead(CountingStore):
        async def claim_many(self, namespace: str, keys: Sequence[str], *, lease: float) -> list[Claim]:
            raise IdempotencyStoreError("store unreachable (test)")

    store = FailingAhead()
    listener = await started(store)
    listener.offer("a", "b")
    await listener.until(lambda: listener.settler.acked == [0, 1], "both acknowledged")
    assert store.single_claims == ["a", "b"]
    assert listener.handled == ["a", "b"]
    await listener.container.stop(1)


@pytest.mark.parametrize("body", [b"not json", b'{"other": 1}'])
async def test_a_message_whose_key_cannot_be_read_ahead_fails_at_its_turn(body: bytes) -> None:
    store = CountingStore()
    listener = await started(store)
    message = Message(body, Headers(), "t", "l", "kafka", partition=0, offset=0)
    outcomes: list[str] = []

    class DeadLetters(Settler):
        async def dead_letter(self, delivery: Delivery, error: BaseException) -> None:
            outcomes.append(type(error).__name__)

    listener.settler = DeadLetters()
    assert listener.container.offer(Delivery(message, listener.settler))
    await listener.until(lambda: outcomes, "dead-lettered")
    assert store.claim_batches == [], "nothing to claim ahead"
    assert outcomes[0] in ("MessageDecodeError", "IdempotencyKeyError")
    await listener.container.stop(1)


async def test_a_header_that_cannot_be_converted_frees_the_key_claimed_ahead() -> None:
    """The payload was decoded and its key claimed ahead; a header parameter then fails to convert at
    the message's turn: the message is dead-lettered and its key is free again (not held by a lease
    renewed as long as the process lives, which would defer every later message of that key)."""
    store = CountingStore()
    handled: list[str] = []

    async def handle(payment: Payment, priority: Annotated[int, Header("x-priority")]) -> None:
        handled.append(payment.payment_id)

    guard = IdempotencyGuard("l", store, Idempotency(), key_reader("l", "payment_id"))
    invoker = Invoker(
        listener_id="l",
        handler=handle,
        plan=plan_parameters(handle, "handle", batch=False),
        codec=JsonCodec(),
        executor=ThreadPoolExecutor(1),
        guard=guard,
    )
    endpoint = Endpoint("l", "kafka", ListenerOptions(topics=("t",), ordering="partition"))
    container = ListenerContainer(
        endpoint,
        invoker,
        IdleTransport(),
        ManualClock(),
        lookahead=invoker.lookahead,  # type: ignore[arg-type]
    )
    await container.start()
    outcomes: list[str] = []

    class DeadLetters(Settler):
        async def dead_letter(self, delivery: Delivery, error: BaseException) -> None:
            outcomes.append(type(error).__name__)

    settler = DeadLetters()
    body = Payment(payment_id="p-1").model_dump_json().encode()
    bad = Message(body, Headers([("x-priority", b"high")]), "t", "l", "kafka", partition=0, offset=0)
    good = Message(body, Headers([("x-priority", b"2")]), "t", "l", "kafka", partition=0, offset=1)
    assert container.offer(Delivery(bad, settler))
    for _ in range(200):
        if outcomes:
            break
        await asyncio.sleep(0)
    assert outcomes == ["MessageDecodeError"]
    assert store.state("p-1") is None, "the key claimed ahead was released"
    assert container.offer(Delivery(good, settler))
    for _ in range(200):
        if handled:
            break
        await asyncio.sleep(0)
    assert handled == ["p-1"], "a later message of the key runs"
    await container.stop(1)
    await guard.close()
