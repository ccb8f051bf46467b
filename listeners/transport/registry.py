"""Transports by name, imported lazily, and the registry that owns an application's transports.

Broker client libraries are imported only when a transport that needs them is created, so an app on
the embedded broker never loads aiokafka or aio-pika.
"""

from __future__ import annotations

import asyncio
import importlib
import importlib.util
import logging
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from listeners.exceptions import TransportUnavailableError
from listeners.spec import TransportKind
from listeners.transport.base import Transport

if TYPE_CHECKING:
    from listeners.deadletter.store import DeadLetterStore

log = logging.getLogger("listeners.transport")

IMPLEMENTATIONS: Mapping[tuple[TransportKind, str], str] = {
    ("kafka", "memory"): "listeners.memory:MemoryKafkaTransport",
    ("rabbit", "memory"): "listeners.memory:MemoryRabbitTransport",
    ("kafka", "aiokafka"): "listeners.kafka.transport:KafkaTransport",
    ("rabbit", "aio-pika"): "listeners.rabbit.transport:RabbitTransport",
}


def load_transport_class(kind: TransportKind, name: str) -> Callable[..., Transport]:
    """The transport class registered for ``(kind, name)``, imported now."""
    target = IMPLEMENTATIONS.get((kind, name))
    if target is None:
        raise TransportUnavailableError(f"no {kind} transport named {name!r}")
    module_name, _, attribute = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        if error.name != module_name:
            raise TransportUnavailableError(
                f"the {kind} transport {name!r} needs {error.name!r}, which is not installed"
            ) from error
        raise TransportUnavailableError(
            f"the {kind} transport {name!r} ({module_name}) is not part of this version of listeners; "
            f"use the embedded broker (memory://) meanwhile"
        ) from None
    transport_class: Callable[..., Transport] = getattr(module, attribute)
    return transport_class


DEAD_LETTER_STORES: Mapping[str, str] = {
    "MemoryKafkaTransport": "listeners.memory.dead_letters:MemoryKafkaDeadLetters",
    "MemoryRabbitTransport": "listeners.memory.dead_letters:MemoryRabbitDeadLetters",
    "KafkaTransport": "listeners.kafka.dead_letters:KafkaDeadLetters",
    "RabbitTransport": "listeners.rabbit.dead_letters:RabbitDeadLetters",
}
"""Dead-letter store of each transport class (by class name; subclasses inherit it), imported lazily."""


def dead_letter_store(transport: Transport) -> DeadLetterStore:
    """The store that browses and replays the dead letters of ``transport`` (started or not)."""
    for cls in type(transport).__mro__:
        target = DEAD_LETTER_STORES.get(cls.__name__)
        if target is not None:
            module_name, _, attribute = target.partition(":")
            store_class: Callable[[Transport], DeadLetterStore] = getattr(
                importlib.import_module(module_name), attribute
            )
            return store_class(transport)
    raise TransportUnavailableError(
        f"the {transport.kind} transport {type(transport).__name__} has no dead-letter store; "
        f"known: {', '.join(DEAD_LETTER_STORES)}"
    )


def transport_available(kind: TransportKind, name: str) -> bool:
    """Whether the transport ``(kind, name)`` can be imported, without importing it."""
    target = IMPLEMENTATIONS.get((kind, name))
    if target is None:
        return False
    try:
        return importlib.util.find_spec(target.partition(":")[0]) is not None
    except ModuleNotFoundError:
        return False


class TransportRegistry:
    """Creates each kind's transport on first use, starts it once, and closes all it started.

    ``factories`` are zero-argument callables, typically the container's transport providers, so a
    transport provider the user overrides is the one used.
    """

    def __init__(self, **factories: Callable[[], Transport]) -> None:
        self._factories = factories
        self._transports: dict[str, Transport] = {}
        self._started: dict[str, asyncio.Task[None]] = {}

    def get(self, kind: TransportKind) -> Transport:
        """The transport of ``kind``, created if needed, not necessarily started."""
        if kind not in self._transports:
            factory = self._factories.get(kind)
            if factory is None:
                raise TransportUnavailableError(f"no {kind} transport is configured")
            self._transports[kind] = factory()
        return self._transports[kind]

    async def started(self, kind: TransportKind) -> Transport:
        """The transport of ``kind``, started exactly once even under concurrent first use."""
        start = self._started.get(kind)
        if start is not None and start.done() and not _failed(start):
            return self._transports[kind]  # the usual case, on every publish: no waiting machinery
        transport = self.get(kind)
        if start is None or _failed(start):
            start = asyncio.ensure_future(transport.start())
            self._started[kind] = start
        await asyncio.shield(start)
        return transport

    async def close(self) -> None:
        """Close every transport that was started, newest first; errors are logged, not raised."""
        for kind in reversed(list(self._started)):
            task = self._started.pop(kind)
            if not task.done() or _failed(task):
                task.cancel()
                continue
            try:
                await self._transports[kind].close()
            except Exception as error:
                log.warning("closing the %s transport failed: %s", kind, error)


def _failed(task: asyncio.Task[None]) -> bool:
    return task.done() and (task.cancelled() or task.exception() is not None)
