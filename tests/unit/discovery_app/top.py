"""Functions and a re-export."""

from listeners import rabbit_listener
from tests.unit.discovery_app.sub.deep import deep  # re-exported: must not be found twice

__all__ = ["deep", "top"]


@rabbit_listener("top", id="top")
async def top(text: str) -> None: ...


async def not_a_listener(text: str) -> None: ...
