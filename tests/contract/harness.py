"""Building throwaway applications for contract tests: handler objects held by a ListenersContainer."""

from __future__ import annotations

from typing import Any

from dependency_injector import providers

from starter import ListenersContainer


def container_for(*handlers: Any) -> Any:
    """A container whose providers hold ``handlers`` (objects with listener methods)."""
    attributes = {f"handlers_{index}": providers.Object(handler) for index, handler in enumerate(handlers)}
    return type("TestContainer", (ListenersContainer,), attributes)()
