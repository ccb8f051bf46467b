"""A wired module with a listener class that no provider makes: a startup error."""

from __future__ import annotations

from dependency_injector import containers

from listeners import kafka_listener

WIRING = containers.WiringConfiguration(modules=["tests.starter.apps.orphan"])


class Orphan:
    @kafka_listener("orphan")
    async def handle(self, item: str) -> None: ...
