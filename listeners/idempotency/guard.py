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

**Transactional mode** (``idempotency.transactional``, a store with transactions: PostgreSQL): no
lease; the key is inserted as done inside a transaction the handler writes its own rows in, so both
commit or roll back together (an exactly-once effect even if the process dies in between). A
duplicate of a key in such a transaction waits for it to end; a store outage always fails closed
(the handler needs the transaction to write in).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from listeners.idempotency.keys import KeyReader
from listeners.idempotency.leases import LeaseKeeper
from listeners.idempotency.store import ClaimState, IdempotencyStore, StoreTransaction, TransactionalStore
from listeners.message import Message
from listeners.outcome import Ack, Defer, Outcome
from listeners.retry.backoff import BackOffPolicy
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


class IdempotencyGuard:
    """Runs a listener's handler at most once per business key (see the module docstring)."""

    def __init__(
        self,
        listener_id: str,
        store: IdempotencyStore,
        options: Idempotency,
        key: KeyReader,
        transactions: TransactionalStore | None = None,
    ) -> None:
        self._listener_id = listener_id
        self._store = store
        self._transactions = transactions
        self._key = key
        self._lease = options.lease
        self._ttl = options.ttl
        self._fail_open = options.on_store_error == "fail_open"
        self._store_failures = 0
        self._leases = LeaseKeeper(store, listener_id, options.lease)

    async def close(self) -> None:
        """Stop renewing leases (the application's shutdown)."""
        await self._leases.close()

    async def run(self, message: Message, payload: Any, handle: Handle) -> Outcome:
        """Handle ``message`` through ``handle`` unless its key is done or in progress elsewhere."""
        key = self._key(message, payload)
        namespace = self._listener_id
        if self._transactions is not None:
            return await self._in_transaction(self._transactions, message, key, handle)
        try:
            claim = await self._store.claim(namespace, key, lease=self._lease)
        except Exception as error:
            return await self._store_unavailable(message, key, error, handle)
        self._store_failures = 0
        if claim.state is ClaimState.DONE:
            log.debug("listener %s: %s is a duplicate of key %r: skipped", namespace, message.describe(), key)
            return DUPLICATE
        if claim.state is ClaimState.IN_PROGRESS or claim.token is None:
            return self._in_progress(key, claim.retry_after)
        token = claim.token
        self._leases.hold(key, token)
        try:
            outcome = await handle(None)
        except BaseException:
            self._leases.drop(key, token)
            await self._release(namespace, key, token)
            raise
        self._leases.drop(key, token)
        await self._complete(namespace, key, token, message)
        return outcome

    async def _in_transaction(
        self, store: TransactionalStore, message: Message, key: str, handle: Handle
    ) -> Outcome:
        namespace = self._listener_id
        entered = False
        try:
            async with store.transaction(namespace, key, ttl=self._ttl) as transaction:
                entered = True
                self._store_failures = 0
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
            return self._wait_for_store(message, error)

    def _in_progress(self, key: str, retry_after: float | None) -> Defer:
        low, high = IN_PROGRESS_RECHECK
        return Defer(min(max(retry_after or high, low), high), f"key {key!r} is in progress elsewhere")

    async def _store_unavailable(
        self, message: Message, key: str, error: Exception, handle: Handle
    ) -> Outcome:
        if self._fail_open:
            log.warning(
                "listener %s: idempotency store failed (%s: %s); handling %s (key %r) WITHOUT a claim "
                "(on_store_error: fail_open)",
                self._listener_id, type(error).__name__, error, message.describe(), key,
            )  # fmt: skip
            return await handle(None)
        return self._wait_for_store(message, error)

    def _wait_for_store(self, message: Message, error: Exception) -> Defer:
        self._store_failures += 1
        delay = STORE_BACKOFF.delay(min(self._store_failures, 16))
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

    async def _complete(self, namespace: str, key: str, token: str, message: Message) -> None:
        """Mark the key done. Handled already, so a store failure here cannot undo anything: try a
        few times, then log; a duplicate arriving before the lease runs out still waits, one after it
        may run again."""
        for attempt in range(1, COMPLETE_ATTEMPTS + 1):
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
                await asyncio.sleep(STORE_BACKOFF.base_delay(attempt))
