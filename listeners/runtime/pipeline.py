"""The per-message pipeline: interceptors around the invoker.

An interceptor is any ``async (message, call_next) -> Outcome`` callable. It can act before and after
the rest of the pipeline (tracing, metrics), turn exceptions into outcomes (error handling), or answer
without calling on (idempotency skipping a duplicate). The starter assembles, outermost first:
tracing -> metrics/logging -> error handling -> idempotency -> invoker.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol

from listeners.message import Message
from listeners.outcome import Outcome

Handler = Callable[[Message], Awaitable[Outcome]]
"""The rest of the pipeline, from a given step inward."""


class Interceptor(Protocol):
    """One pipeline step."""

    async def __call__(self, message: Message, call_next: Handler) -> Outcome: ...


def _link(interceptor: Interceptor, call_next: Handler) -> Handler:
    async def step(message: Message) -> Outcome:
        return await interceptor(message, call_next)

    return step


def build_pipeline(interceptors: Sequence[Interceptor], terminal: Handler) -> Handler:
    """Compose ``interceptors`` (outermost first) around ``terminal`` into one handler, once at startup."""
    handler = terminal
    for interceptor in reversed(interceptors):
        handler = _link(interceptor, handler)
    return handler
