"""The stores of one application: created from settings on first use, started once, closed at the end.

Store modules are imported only when a listener uses that store, so an app without Redis listeners
never imports redis. A store the user provides (the container's ``idempotency_store`` provider)
serves every listener instead.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any

from listeners.clock import Clock
from listeners.exceptions import IdempotencyStoreError
from listeners.idempotency.config import IdempotencySettings
from listeners.idempotency.store import IdempotencyStore
from listeners.spec import StoreName

IMPLEMENTATIONS: Mapping[StoreName, str] = {
    "memory": "listeners.idempotency.memory:MemoryIdempotencyStore",
    "sqlite": "listeners.idempotency.sqlite:SqliteIdempotencyStore",
    "redis": "listeners.idempotency.redis:RedisIdempotencyStore",
    "postgres": "listeners.idempotency.postgres:PostgresIdempotencyStore",
}


class IdempotencyStores:
    """Creates each kind of store on first use, starts it once, and closes every store it started."""

    def __init__(
        self, settings: IdempotencySettings, clock: Clock, provided: IdempotencyStore | None = None
    ) -> None:
        self._settings = settings
        self._clock = clock
        self._provided = provided
        self._started: dict[StoreName, IdempotencyStore] = {}

    async def started(self, kind: StoreName) -> IdempotencyStore:
        """The started store of ``kind`` (or the provided store); raises IdempotencyStoreError."""
        if self._provided is not None:
            if not self._started:
                await self._provided.start()
                self._started[kind] = self._provided
            return self._provided
        store = self._started.get(kind)
        if store is None:
            store = self.create(kind)
            await store.start()
            self._started[kind] = store
        return store

    async def close(self) -> None:
        """Close every started store; the first error is raised after all were closed."""
        stores, self._started = list(self._started.values()), {}
        errors = []
        for store in stores:
            try:
                await store.close()
            except Exception as error:
                errors.append(error)
        if errors:
            raise errors[0]

    def create(self, kind: StoreName) -> IdempotencyStore:
        """A new, not yet started store of ``kind`` from the settings."""
        module_name, _, attribute = IMPLEMENTATIONS[kind].partition(":")
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as error:
            if error.name == module_name:
                raise IdempotencyStoreError(
                    f"the {kind} idempotency store is not part of this version"
                ) from None
            raise IdempotencyStoreError(
                f"the {kind} idempotency store needs {error.name!r}: pip install 'listeners[{kind}]'"
            ) from error
        factory: Callable[..., IdempotencyStore] = getattr(module, attribute)
        settings = self._settings
        arguments: dict[StoreName, tuple[Any, ...]] = {
            "memory": (self._clock,),
            "sqlite": (settings.sqlite, self._clock),
            "redis": (settings.redis,),
            "postgres": (settings.postgres,),
        }
        return factory(*arguments[kind])
