"""An idempotency store in process memory, on the application clock (for tests and single instances).

It forgets everything when the process stops and is not shared between instances: use it for tests
(with ``ManualClock``, leases and TTLs expire when the test advances time) or a single process whose
duplicates only come from redelivery.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Sequence
from dataclasses import dataclass

from listeners.clock import Clock, SystemClock
from listeners.idempotency.store import Claim, ClaimState

_FORGET_PER_CLAIM = 4
"""Expired entries dropped per claim: more than a claim adds, so they never pile up."""


@dataclass(slots=True)
class _Entry:
    token: str | None  # None once done
    expires_at: float


class MemoryIdempotencyStore:
    """:class:`~listeners.idempotency.store.IdempotencyStore` in a dict."""

    def __init__(self, clock: Clock | None = None) -> None:
        self._clock = clock or SystemClock()
        self._entries: dict[tuple[str, str], _Entry] = {}
        # Expiry times in a heap (stale items, from renewals and completions, are skipped when popped):
        # expired entries leave a few at a time on each claim, so memory stays bounded by one TTL's
        # keys at a cost of O(log n) per claim.
        self._expiries: list[tuple[float, tuple[str, str]]] = []
        self._tokens = itertools.count(1)

    async def start(self) -> None:
        pass

    async def claim(self, namespace: str, key: str, *, lease: float) -> Claim:
        return self._claim(namespace, key, lease, self._clock.time())

    def _claim(self, namespace: str, key: str, lease: float, now: float) -> Claim:
        self._forget_expired(now)
        name = (namespace, key)
        entry = self._entries.get(name)
        if entry is not None and entry.expires_at > now:
            if entry.token is None:
                return Claim(ClaimState.DONE)
            return Claim(ClaimState.IN_PROGRESS, retry_after=entry.expires_at - now)
        token = str(next(self._tokens))  # unique within this store, which is all a token must be here
        self._set(name, _Entry(token, now + lease))
        return Claim(ClaimState.CLAIMED, token)

    async def claim_many(self, namespace: str, keys: Sequence[str], *, lease: float) -> list[Claim]:
        now = self._clock.time()
        return [self._claim(namespace, key, lease, now) for key in keys]

    async def complete_many(self, namespace: str, claims: Sequence[tuple[str, str]], *, ttl: float) -> None:
        expires_at = self._clock.time() + ttl
        for key, token in claims:
            self._complete(namespace, key, token, expires_at)

    async def complete(self, namespace: str, key: str, token: str, *, ttl: float) -> None:
        self._complete(namespace, key, token, self._clock.time() + ttl)

    def _complete(self, namespace: str, key: str, token: str, expires_at: float) -> None:
        entry = self._entries.get((namespace, key))
        if entry is not None and entry.token == token:
            self._set((namespace, key), _Entry(None, expires_at))

    async def release(self, namespace: str, key: str, token: str) -> None:
        entry = self._entries.get((namespace, key))
        if entry is not None and entry.token == token:
            del self._entries[(namespace, key)]

    async def extend(self, namespace: str, key: str, token: str, *, lease: float) -> bool:
        entry = self._entries.get((namespace, key))
        if entry is None or entry.token != token or entry.expires_at <= self._clock.time():
            return False
        self._set((namespace, key), _Entry(token, self._clock.time() + lease))
        return True

    async def close(self) -> None:
        self._entries.clear()
        self._expiries.clear()

    def __len__(self) -> int:
        return len(self._entries)

    def _set(self, name: tuple[str, str], entry: _Entry) -> None:
        self._entries[name] = entry
        heapq.heappush(self._expiries, (entry.expires_at, name))

    def _forget_expired(self, now: float) -> None:
        expiries = self._expiries
        for _ in range(_FORGET_PER_CLAIM):
            if not expiries or expiries[0][0] > now:
                return
            expires_at, name = heapq.heappop(expiries)
            entry = self._entries.get(name)
            if entry is not None and entry.expires_at == expires_at:
                del self._entries[name]
