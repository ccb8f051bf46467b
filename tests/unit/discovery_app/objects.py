"""Listener classes outside the wired package, made by providers."""

from listeners import kafka_listener


class Counted:
    instances = 0

    def __init__(self) -> None:
        type(self).instances += 1

    @kafka_listener("counted", id="counted")
    async def handle(self, text: str) -> None: ...


class Held:
    @kafka_listener("held", id="held")
    async def handle(self, text: str) -> None: ...
