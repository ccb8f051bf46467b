"""An idempotency store in process memory, on the application clock (for tests and single instances).

It forgets everything when the process stops and is not shared between instances: use it for tests
(with ``ManualClock``, leases and TTLs expire when the test advances time) or a single process whose
duplicates only come from redelivery.
"""

from __future__ import annotations

from dataclasses import dataclass

from listeners.clock import Clock, SystemClock
from listeners.idempotency.store import Claim, ClaimState, new_token

_PRUNE_EVERY = 1024
"""Claims between sweeps of expired entries, so memory stays bounded by the keys of one TTL."""


@dataclass(slots=True)
class _Entry:
    token: str | None  # None once done
    expires_at: float


class MemoryIdempotencyStore:
    """:class:`~listeners.idempotency.store.IdempotencyStore` in a dict."""

    def __init__(self, clock: Clock | None = None) -> None:
        self._clock = clock or SystemClock()
        self._entries: dict[tuple[str, str], _Entry] = {}
        self._claims = 0

    async def start(self) -> None:
        pass

    async def claim(self, namespace: str, key: str, *, lease: float) -> Claim:
        now = self._clock.time()
        self._claims += 1
        if self._claims % _PRUNE_EVERY == 0:
            self._prune(now)
        entry = self._entries.get((namespace, key))
        if entry is not None and entry.expires_at > now:
            if entry.token is None:
                return Claim(ClaimState.DONE)
            return Claim(ClaimState.IN_PROGRESS, retry_after=entry.expires_at - now)
        token = new_token()
        self._entries[(namespace, key)] = _Entry(token, now + lease)
        return Claim(ClaimState.CLAIMED, token)

    async def complete(self, namespace: str, key: str, token: str, *, ttl: float) -> None:
        entry = self._entries.get((namespace, key))
        if entry is not None and entry.token == token:
            entry.token, entry.expires_at = None, self._clock.time() + ttl

    async def release(self, namespace: str, key: str, token: str) -> None:
        entry = self._entries.get((namespace, key))
        if entry is not None and entry.token == token:
            del self._entries[(namespace, key)]

    async def extend(self, namespace: str, key: str, token: str, *, lease: float) -> bool:
        entry = self._entries.get((namespace, key))
        if entry is None or entry.token != token or entry.expires_at <= self._clock.time():
            return False
        entry.expires_at = self._clock.time() + lease
        return True

    async def close(self) -> None:
        self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)

    def _prune(self, now: float) -> None:
        expired = [name for name, entry in self._entries.items() if entry.expires_at <= now]
        for name in expired:
            del self._entries[name]
