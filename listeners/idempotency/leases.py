"""Keeping the leases of running handlers alive, so a slow handler keeps its key.

A claim's lease frees the key if the process dies. While the process lives and the handler still
runs, the key must stay claimed, or a duplicate could run beside it. One task per listener renews
every lease held longer than a third of its length: per message this costs a dict insert and delete,
not a timer, and a store round trip only for handlers that run long.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable

from listeners.idempotency.store import IdempotencyStore

log = logging.getLogger("listeners.idempotency")

_IDLE_ROUNDS = 3
"""Renewal rounds without a held claim after which the task ends (the next claim starts it again)."""


class LeaseKeeper:
    """Renews the leases of one listener's claims while their handlers run."""

    def __init__(self, store: IdempotencyStore, namespace: str, lease: float) -> None:
        self._store = store
        self._namespace = namespace
        self._lease = lease
        self._every = lease / 3
        self._held: dict[tuple[str, str], float] = {}  # (key, token) -> loop time claimed or renewed
        self._task: asyncio.Task[None] | None = None

    def hold(self, key: str, token: str) -> None:
        """``key`` was claimed with ``token`` and its handler starts."""
        self.hold_many(((key, token),))

    def hold_many(self, claims: Iterable[tuple[str, str]]) -> None:
        """Each ``(key, token)`` of ``claims`` was claimed (the keys claimed ahead together)."""
        loop = asyncio.get_running_loop()
        self._held.update(dict.fromkeys(claims, loop.time()))
        if self._task is None or self._task.done():
            self._task = loop.create_task(self._renew_forever())

    def drop(self, key: str, token: str) -> None:
        """The handler of ``key`` ended (the claim is being completed or released)."""
        self._held.pop((key, token), None)

    async def close(self) -> None:
        """Stop renewing (at shutdown; leases of handlers abandoned then run out on their own)."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _renew_forever(self) -> None:
        loop = asyncio.get_running_loop()
        idle = 0
        while idle < _IDLE_ROUNDS:  # kept while claims come and go: no task per message
            await asyncio.sleep(self._every)
            idle = idle + 1 if not self._held else 0
            now = loop.time()
            due = [held for held, since in self._held.items() if now - since >= self._every]
            for key, token in due:
                if (key, token) not in self._held:
                    continue  # finished while an earlier renewal was awaited
                await self._renew(key, token, now)

    async def _renew(self, key: str, token: str, now: float) -> None:
        try:
            held = await self._store.extend(self._namespace, key, token, lease=self._lease)
        except Exception as error:
            log.warning(
                "listener %s: could not renew the lease of key %r (%s: %s); trying again in %.3gs",
                self._namespace, key, type(error).__name__, error, self._every,
            )  # fmt: skip
            return
        if held:
            if (key, token) in self._held:
                self._held[(key, token)] = now
            return
        self._held.pop((key, token), None)
        log.warning(
            "listener %s: the lease of key %r ran out while its handler still runs: a duplicate may run "
            "beside it (raise idempotency.lease above the slowest handler)",
            self._namespace, key,
        )  # fmt: skip
