"""A module two levels down in the wired package."""

from listeners import kafka_listener


@kafka_listener("deep", id="deep")
async def deep(text: str) -> None: ...
