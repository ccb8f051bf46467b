"""Claim, handle, complete: how one listener skips business keys it handled already.

For each message the guard reads its key and claims it in the store under a lease:

- **done** (handled within the TTL): the message is acknowledged and skipped (``duplicates
  skipped`` in the listener's stats, logged at DEBUG);
- **in progress** (another worker holds a live lease): the message is *deferred* and claimed again
  shortly, never acknowledged and dropped: it runs once the holder released it or its lease ran out,
  or is skipped once the holder completed it;
- **claimed**: the handler runs, its lease renewed while it does (so a slow handler keeps its key);
  on success the key is completed (kept ``ttl``), on failure the claim is released so the redelivery
  or retry can run.

A store that cannot be reached stops the listener with ``on_store_error: fail_closed`` (the default):
messages are deferred with a growing back-off until the store answers, so the listener's in-flight
bound fills and its consumers pause. ``fail_open`` handles them without a claim instead (logged at
WARNING): duplicates may then run twice.

**Claims ahead** (a store that batches, :class:`~listeners.idempotency.store.BatchingStore`: memory,
Redis): the listener container tells the guard of each message it accepts (:meth:`IdempotencyGuard.
expect`); the keys of the messages accepted together (one poll's records) are claimed in one store
call while they wait for their turns, their leases renewed from then on, and a handled key is marked
done together with the others finishing at the same time while the ordering lane goes on (the
message is acknowledged once its key is done: ``Ack.after``). A message released before its turn
(shutdown, partition revoked) releases its claim (:meth:`IdempotencyGuard.forget`). Only a claim the
batch got, or a key found done, is used at the message's turn; any other answer (in progress, a
store error) is claimed again then, as without claims ahead.

**Transactional mode** (``idempotency.transactional``, a store with transactions: PostgreSQL): no
lease; the key is inserted as done inside a transaction the handler writes its own rows in, so both
commit or roll back together (an exactly-once effect even if the process dies in between). A
duplicate of a key in such a transaction waits for it to end; a store outage always fails closed
(the handler needs the transaction to write in).
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Awaitable, Callable
from typing import Any

from listeners.idempotency.keys import KeyReader
from listeners.idempotency.leases import LeaseKeeper
from listeners.idempotency.store import (
    BatchingStore,
    Claim,
    ClaimState,
    IdempotencyStore,
    StoreTransaction,
    TransactionalStore,
)
from listeners.message import Message
from listeners.outcome import ACK, Ack, Defer, Outcome
from listeners.retry.backoff import BackOffPolicy
from listeners.runtime.stats import ListenerStats
from listeners.spec import Backoff, Idempotency

log = logging.getLogger("listeners.idempotency")

Handle = Callable[[StoreTransaction | None], Awaitable[Outcome]]
"""Runs the handler, with the idempotency transaction in transactional mode."""

DUPLICATE = Ack(skipped="duplicate")
IN_PROGRESS_RECHECK = (0.05, 1.0)
"""Bounds (seconds) of the wait before a key in progress elsewhere is claimed again."""
STORE_BACKOFF = BackOffPolicy.from_spec(Backoff(delay=0.5, multiplier=2.0, max_delay=30.0, jitter=0.1))
"""Waits between attempts while the store cannot be reached (fail closed)."""
COMPLETE_ATTEMPTS = 3


class EarlyClaim:
    """A message's key, read when the message was accepted, and the claim made for it ahead of its turn
    (None until the batch answered, or if it got nothing usable)."""

    __slots__ = ("claim", "forgotten", "key", "message", "payload", "ready")

    def __init__(self, message: Message, key: str, payload: Any, ready: asyncio.Future[None]) -> None:
        self.message = message
        self.key = key
        self.payload = payload
        self.ready = ready
        self.claim: Claim | None = None
        self.forgotten = False


class IdempotencyGuard:
    """Runs a listener's handler at most once per business key (see the module docstring)."""

    def __init__(
        self,
        listener_id: str,
        store: IdempotencyStore,
        options: Idempotency,
        key: KeyReader,
        transactions: TransactionalStore | None = None,
        stats: ListenerStats | None = None,
    ) -> None:
        self._listener_id = listener_id
        self._store = store
        self._transactions = transactions
        self._key = key
        self._lease = options.lease
        self._ttl = options.ttl
        self._fail_open = options.on_store_error == "fail_open"
        self._store_down_since: float | None = None  # loop time of the first failure of an outage
        self._stats = stats or ListenerStats()  # the listener's, when given: counts store errors
        self._leases = LeaseKeeper(store, listener_id, options.lease)
        self._batching = store if transactions is None and isinstance(store, BatchingStore) else None
        self._early: dict[int, EarlyClaim] = {}  # by id(message); the entry keeps its message alive
        self._expected: list[EarlyClaim] = []  # accepted this event-loop turn, claimed at its end
        self._completing: dict[str, asyncio.Future[None]] = {}  # key -> done once marked done
        self._to_complete: list[tuple[str, str, Message]] = []  # handled this turn: key, token, message
        self._turn_done: asyncio.Future[None] | None = None  # done once this turn's keys are
        self._turn_ack: Ack = ACK  # Ack(after=_turn_done), one for the turn's messages
        self._background: set[asyncio.Future[None]] = set()

    @property
    def claims_ahead(self) -> bool:
        """Whether :meth:`expect` claims keys ahead of their messages' turns (a batching store)."""
        return self._batching is not None

    async def close(self) -> None:
        """Stop renewing leases and finish marking keys done (the application's shutdown)."""
        if self._background:
            await asyncio.gather(*self._background, return_exceptions=True)
        await self._leases.close()

    def expect(self, message: Message, payload: Any) -> None:
        """``message`` was accepted: claim its key ahead, with the others accepted in this turn.

        A message whose key cannot be read is left alone; its turn raises the error.
        """
        if self._batching is None:
            return
        try:
            key = self._key(message, payload)
        except Exception:
            return
        expected = self._expected
        if not expected:
            # The task starts after this turn, so the messages accepted with this one join it; made
            # now, it runs before the lanes of these messages, so a store answering at once (memory)
            # has claimed them before their turns.
            ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            task = asyncio.ensure_future(self._claim_expected())
            self._background.add(task)
            task.add_done_callback(self._background.discard)
        else:
            ready = expected[0].ready
        early = EarlyClaim(message, key, payload, ready)
        expected.append(early)
        self._early[id(message)] = early

    def take(self, message: Message) -> EarlyClaim | None:
        """The early claim of ``message`` (its turn came), if :meth:`expect` made one."""
        early = self._early.pop(id(message), None)
        if early is not None and early.message is not message:
            return None
        return early

    def forget(self, message: Message) -> None:
        """``message`` was released before its turn: free the key claimed for it."""
        early = self.take(message)
        if early is None:
            return
        early.forgotten = True
        if early.ready.done():
            self._release_early(early)
        # else: the batch's answer releases it

    async def _claim_expected(self) -> None:
        """Claim the keys of the messages accepted in the turn that started this task, in one call."""
        batch, self._expected = self._expected, []
        assert self._batching is not None
        ready = batch[0].ready
        try:
            claims = await self._batching.claim_many(
                self._listener_id, [early.key for early in batch], lease=self._lease
            )
        except Exception as error:  # each message claims again at its turn, where errors are handled
            log.debug("listener %s: claiming %d keys ahead failed: %s", self._listener_id, len(batch), error)
            if not ready.done():
                ready.set_result(None)
            return
        held: list[tuple[str, str]] = []
        forgotten: list[EarlyClaim] = []
        abandoned = ready.cancelled()  # its waiters claim at their turns: these claims are not theirs
        for early, claim in zip(batch, claims, strict=True):
            token = claim.token
            if token is not None and claim.state is ClaimState.CLAIMED:
                early.claim = claim
                held.append((early.key, token))
                if early.forgotten or abandoned:
                    early.forgotten = True
                    forgotten.append(early)
            elif claim.state is ClaimState.DONE and not abandoned:
                early.claim = claim
        self._leases.hold_many(held)
        for early in forgotten:
            self._release_early(early)
        if not ready.done():
            ready.set_result(None)

    @staticmethod
    async def claimed_ahead(early: EarlyClaim) -> None:
        """Wait for the batch that claims ``early`` (awaited directly, not shielded: every lane of a
        batch waits for the same future, and a shield per message costs more than the rest of the
        wait). If another waiter's cancellation cancelled it, this message claims at its turn."""
        try:
            await early.ready
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise
            early.claim = None

    def _release_early(self, early: EarlyClaim) -> None:
        claim = early.claim
        if claim is None or claim.token is None:
            return
        early.claim = None
        self._leases.drop(early.key, claim.token)
        task = asyncio.ensure_future(self._release(self._listener_id, early.key, claim.token))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    @staticmethod
    def held_ahead(early: EarlyClaim) -> bool:
        """Whether the batch that claimed ``early`` ahead (answered: see :meth:`claimed_ahead`) holds
        its key: the handler may run at once, then :meth:`handled` or :meth:`failed`. Otherwise
        :meth:`run` decides (a duplicate, a key in progress, a claim to make now)."""
        claim = early.claim
        return claim is not None and claim.token is not None

    def handled(self, early: EarlyClaim) -> Outcome:
        """The handler of a message whose key was :meth:`held_ahead` returned: mark the key done,
        together with the others handled in this turn; the outcome acknowledges once it is."""
        key, token = early.key, early.claim.token  # type: ignore[union-attr]
        assert token is not None
        self._leases.drop(key, token)
        self._store_down_since = None
        return self._complete_soon(key, token, early.message)

    async def failed(self, early: EarlyClaim) -> None:
        """The handler of a message whose key was :meth:`held_ahead` raised: free the key (awaited, so
        that a retry of the message finds it free)."""
        key, token = early.key, early.claim.token  # type: ignore[union-attr]
        assert token is not None
        self._leases.drop(key, token)
        await self._release(self._listener_id, key, token)

    async def run(
        self, message: Message, payload: Any, handle: Handle, early: EarlyClaim | None = None
    ) -> Outcome:
        """Handle ``message`` through ``handle`` unless its key is done or in progress elsewhere.

        ``early`` is the message's claim made ahead (:meth:`take`), if any.
        """
        namespace = self._listener_id
        claim: Claim | None = None
        if early is not None:
            if not early.ready.done():
                await self.claimed_ahead(early)
            key, claim = early.key, early.claim
        else:
            key = self._key(message, payload)
            if self._transactions is not None:
                return await self._in_transaction(self._transactions, message, key, handle)
        held = claim is not None
        if claim is None:
            completing = self._completing.get(key)
            if completing is not None:  # this process is marking it done: claiming now finds it busy
                await asyncio.shield(completing)
            try:
                claim = await self._store.claim(namespace, key, lease=self._lease)
            except Exception as error:
                return await self._store_unavailable(message, key, error, handle)
        self._store_down_since = None
        if claim.state is ClaimState.DONE:
            log.debug("listener %s: %s is a duplicate of key %r: skipped", namespace, message.describe(), key)
            return DUPLICATE
        if claim.state is ClaimState.IN_PROGRESS or claim.token is None:
            return self._in_progress(key, claim.retry_after)
        token = claim.token
        if not held:
            self._leases.hold(key, token)
        try:
            outcome = await handle(None)
        except BaseException:
            self._leases.drop(key, token)
            await self._release(namespace, key, token)
            raise
        self._leases.drop(key, token)
        if self._batching is not None and outcome.__class__ is Ack:
            return self._complete_soon(key, token, message)
        await self._complete(namespace, key, token, message)
        return outcome

    def _complete_soon(self, key: str, token: str, message: Message) -> Ack:
        """Mark ``key`` done together with the other keys handled in this event-loop turn: the outcome
        (shared by them) acknowledges once they are, or once marking them failed for good (logged)."""
        done = self._turn_done
        if done is None:
            loop = asyncio.get_running_loop()
            done = self._turn_done = loop.create_future()
            self._turn_ack = Ack(after=done)
            loop.call_soon(self._complete_turn)
        self._to_complete.append((key, token, message))
        self._completing[key] = done
        return self._turn_ack

    def _complete_turn(self) -> None:
        batch, self._to_complete = self._to_complete, []
        done, self._turn_done = self._turn_done, None
        if done is None:
            return
        task = asyncio.ensure_future(self._complete_batch(batch, done))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _complete_batch(
        self, batch: list[tuple[str, str, Message]], done: asyncio.Future[None]
    ) -> None:
        assert self._batching is not None
        namespace = self._listener_id
        try:
            await self._batching.complete_many(
                namespace, [(key, token) for key, token, _ in batch], ttl=self._ttl
            )
        except Exception:  # one by one with retries; each logs if it fails for good
            await asyncio.gather(
                *(self._complete(namespace, key, token, message, tried=1) for key, token, message in batch)
            )
        finally:
            completing = self._completing
            for key, _, _ in batch:
                if completing.get(key) is done:
                    del completing[key]
            if not done.done():
                done.set_result(None)

    async def _in_transaction(
        self, store: TransactionalStore, message: Message, key: str, handle: Handle
    ) -> Outcome:
        namespace = self._listener_id
        entered = False
        try:
            async with store.transaction(namespace, key, ttl=self._ttl) as transaction:
                entered = True
                self._store_down_since = None
                if transaction.duplicate:
                    log.debug(
                        "listener %s: %s is a duplicate of key %r: skipped",
                        namespace,
                        message.describe(),
                        key,
                    )
                    return DUPLICATE
                if transaction.state is not ClaimState.CLAIMED:
                    return self._in_progress(key, transaction.retry_after)
                return await handle(transaction)
        except Exception as error:
            if entered:  # the handler failed (rolled back) or the commit did: an attempt that failed
                raise
            self._stats.store_errors += 1
            return self._wait_for_store(message, error)

    def _in_progress(self, key: str, retry_after: float | None) -> Defer:
        low, high = IN_PROGRESS_RECHECK
        return Defer(min(max(retry_after or high, low), high), f"key {key!r} is in progress elsewhere")

    async def _store_unavailable(
        self, message: Message, key: str, error: Exception, handle: Handle
    ) -> Outcome:
        self._stats.store_errors += 1
        if self._fail_open:
            log.warning(
                "listener %s: idempotency store failed (%s: %s); handling %s (key %r) WITHOUT a claim "
                "(on_store_error: fail_open)",
                self._listener_id, type(error).__name__, error, message.describe(), key,
            )  # fmt: skip
            return await handle(None)
        return self._wait_for_store(message, error)

    def _wait_for_store(self, message: Message, error: Exception) -> Defer:
        """Defer ``message`` while the store is down, backing off with the outage's length (not with
        how many messages met it): each waits about as long as the store has been down so far."""
        now = asyncio.get_running_loop().time()
        if self._store_down_since is None:
            self._store_down_since = now
        down_for = now - self._store_down_since
        failures = 1 + math.floor(math.log2(max(down_for, STORE_BACKOFF.initial) / STORE_BACKOFF.initial))
        delay = STORE_BACKOFF.delay(min(failures, 16))
        log.error(
            "listener %s: idempotency store failed (%s: %s); %s waits %.2gs (on_store_error: fail_closed)",
            self._listener_id, type(error).__name__, error, message.describe(), delay,
        )  # fmt: skip
        return Defer(delay, "idempotency store unavailable")

    async def _release(self, namespace: str, key: str, token: str) -> None:
        """Free the claim after a failure; if that fails too, the lease running out frees it."""
        try:
            await self._store.release(namespace, key, token)
        except Exception as error:
            log.warning(
                "listener %s: could not release key %r after a failure (its lease frees it in %.3gs): %s",
                namespace, key, self._lease, error,
            )  # fmt: skip

    async def _complete(
        self, namespace: str, key: str, token: str, message: Message, *, tried: int = 0
    ) -> None:
        """Mark the key done. Handled already, so a store failure here cannot undo anything: try a
        few times (``tried`` failed already), then log; a duplicate arriving before the lease runs
        out still waits, one after it may run again."""
        for attempt in range(tried + 1, COMPLETE_ATTEMPTS + 1):
            if attempt > 1:
                await asyncio.sleep(STORE_BACKOFF.base_delay(attempt - 1))
            try:
                await self._store.complete(namespace, key, token, ttl=self._ttl)
                return
            except Exception as error:
                if attempt == COMPLETE_ATTEMPTS:
                    log.error(
                        "listener %s: %s was handled but key %r could not be marked done: %s: %s; "
                        "a duplicate after its lease (%.3gs) may run again",
                        namespace, message.describe(), key, type(error).__name__, error, self._lease,
                    )  # fmt: skip
                    return
