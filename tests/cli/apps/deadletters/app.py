"""The dead-letters app's container."""

from __future__ import annotations

from dependency_injector import containers

from starter import ListenersContainer


class Container(ListenersContainer):
    wiring_config = containers.WiringConfiguration(modules=[".handlers"])


container = Container()
