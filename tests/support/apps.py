"""Throwaway applications for tests: a ListenersContainer whose providers hold handler objects."""

from __future__ import annotations

from typing import Any

from dependency_injector import providers

from listeners.memory import MemoryBroker
from starter import ListenersContainer


def app_with(*handlers: Any, broker: MemoryBroker | None = None, **named: Any) -> Any:
    """A container holding ``handlers`` (objects with listener methods), on ``broker`` when given."""
    held = {f"handlers_{index}": handler for index, handler in enumerate(handlers)} | named
    attributes: dict[str, Any] = {name: providers.Object(handler) for name, handler in held.items()}
    container = type("TestContainer", (ListenersContainer,), attributes)()
    if broker is not None:
        container.memory_broker.override(providers.Object(broker))
    return container
