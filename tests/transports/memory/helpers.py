"""Running several apps on one embedded broker, as several processes share a real one."""

from __future__ import annotations

from typing import Any

from dependency_injector import providers

from listeners.memory import MemoryBroker
from starter import ListenersContainer


def app_on(broker: MemoryBroker, **handlers: Any) -> Any:
    """A container whose providers hold ``handlers`` and whose embedded broker is ``broker``."""
    attributes: dict[str, Any] = {name: providers.Object(handler) for name, handler in handlers.items()}
    container = type("MemoryTestContainer", (ListenersContainer,), attributes)()
    container.memory_broker.override(providers.Object(broker))
    return container
