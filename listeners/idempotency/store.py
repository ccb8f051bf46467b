"""The seam every idempotency store implements: claim a key under a lease, complete it, release it.

A key moves through three states: free, *in progress* (claimed under a lease that holds a random
token) and *done* (kept for ``ttl``). Only the holder of the token can complete or release a claim,
so a worker whose lease ran out (and whose key another worker claimed since) changes nothing.
Keys are namespaced (the listener id), so two listeners never see each other's keys.
"""

from __future__ import annotations

import enum
import secrets
from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable


class ClaimState(enum.Enum):
    """What a claim found: the key is now the caller's, someone else's for a while, or done."""

    CLAIMED = "claimed"
    """The key was free (or its lease had run out): the caller holds it now."""
    IN_PROGRESS = "in_progress"
    """Another worker holds a live lease on it."""
    DONE = "done"
    """It was handled already (within its TTL)."""


@dataclass(slots=True)
class Claim:
    """The answer to :meth:`IdempotencyStore.claim` (a value: not changed once made; not frozen, which
    would make each of the many a batch of claims creates cost twice as much).

    ``token`` identifies the caller's claim (CLAIMED only). ``retry_after`` is how many seconds are
    left on another worker's lease (IN_PROGRESS only, when the store knows).
    """

    state: ClaimState
    token: str | None = None
    retry_after: float | None = None


class IdempotencyStore(Protocol):
    """Where listeners record which business keys they handled. Errors raise; the caller decides
    between failing closed (wait) and failing open (handle anyway)."""

    async def start(self) -> None:
        """Connect (and create tables where configured); raises IdempotencyStoreError naming the
        server when it cannot."""
        ...

    async def claim(self, namespace: str, key: str, *, lease: float) -> Claim:
        """Claim ``key`` for ``lease`` seconds unless it is done or held under a live lease."""
        ...

    async def complete(self, namespace: str, key: str, token: str, *, ttl: float) -> None:
        """Mark the claimed ``key`` done for ``ttl`` seconds (if ``token`` still holds it)."""
        ...

    async def release(self, namespace: str, key: str, token: str) -> None:
        """Free the claimed ``key`` so a redelivery can run (if ``token`` still holds it)."""
        ...

    async def extend(self, namespace: str, key: str, token: str, *, lease: float) -> bool:
        """Renew the claim for ``lease`` seconds from now; False if ``token`` no longer holds it."""
        ...

    async def close(self) -> None:
        """Free connections; the store is not used afterwards."""
        ...


@runtime_checkable
class BatchingStore(Protocol):
    """A store that answers many calls in one round trip. A listener whose store is one claims the
    keys of the messages it accepted together in one call, before their turns, and marks keys done
    without holding up the next message (see :class:`~listeners.idempotency.guard.IdempotencyGuard`).
    """

    async def claim_many(self, namespace: str, keys: Sequence[str], *, lease: float) -> list[Claim]:
        """:meth:`IdempotencyStore.claim` for each key, in order (a key repeated finds itself in
        progress); one error fails them all."""
        ...

    async def complete_many(self, namespace: str, claims: Sequence[tuple[str, str]], *, ttl: float) -> None:
        """:meth:`IdempotencyStore.complete` for each ``(key, token)``; one error fails them all
        (completing a key twice is harmless, so the caller may complete them again one by one)."""
        ...


class StoreTransaction:
    """A transaction in which a listener's idempotency key commits together with its handler's writes.

    Declare a handler parameter of this type on a listener with ``idempotency: {transactional: true}``
    (a store that supports it: ``postgres``) and write on :attr:`connection`: the key row is inserted
    in the same transaction, so the business writes and the key commit or roll back together.
    """

    state: ClaimState
    retry_after: float | None

    @property
    def duplicate(self) -> bool:
        """The key is done already: the handler must not run."""
        return self.state is ClaimState.DONE

    @property
    def connection(self) -> Any:
        """The store's database connection inside the transaction (asyncpg's for PostgreSQL)."""
        raise NotImplementedError


class TransactionalStore(Protocol):
    """A store that can commit a key together with the handler's own writes."""

    def transaction(
        self, namespace: str, key: str, *, ttl: float, wait: float | None = None
    ) -> AbstractAsyncContextManager[StoreTransaction]:
        """Insert ``key`` as done in a new transaction; commit it with the block's writes, roll both
        back on an exception. A key done already yields ``duplicate``; one held elsewhere
        ``IN_PROGRESS`` (after waiting up to ``wait`` seconds for another transaction on it)."""
        ...


def new_token() -> str:
    """A random claim token."""
    return secrets.token_hex(16)


def token_base() -> str:
    """The random part (96 bits) of claim tokens made together: the ``i``-th is the base followed by
    ``i`` in hex (``f"{base}{i:x}"``), one system call for all of them instead of one per token."""
    return secrets.token_hex(12)
