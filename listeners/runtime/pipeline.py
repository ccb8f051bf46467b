"""The per-message pipeline: interceptors around the invoker.

An interceptor is any ``async (message, call_next) -> Outcome`` callable. It can act before and after
the rest of the pipeline (tracing, metrics), turn exceptions into outcomes, or answer without calling
on (idempotency skipping a duplicate). The listener container runs the composed pipeline and hands
any exception that escapes it to the listener's error handler (retry or dead letter), so error
handling is always the outermost step without costing a layer of its own.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from listeners.message import Message
from listeners.outcome import Outcome

Handler = Callable[[Message], Awaitable[Outcome]]
"""The rest of the pipeline, from a given step inward."""


@dataclass(frozen=True, slots=True)
class DirectCall:
    """A pipeline that only awaits the handler with the decoded body, in parts, so that the listener
    container can run it without a coroutine of its own (and without a Message, when the transport's
    delivery has the body before it builds one). Its outcome is :data:`~listeners.outcome.ACK` once
    the handler returns."""

    decode: Callable[[bytes], Any]
    handler: Callable[[Any], Awaitable[Any]]
    decode_failed: Callable[[Message, Exception], Exception]
    """The error to raise when ``decode`` fails (a :class:`~listeners.exceptions.MessageDecodeError`)."""


class Interceptor(Protocol):
    """One pipeline step."""

    async def __call__(self, message: Message, call_next: Handler) -> Outcome: ...


class _Step:
    """An interceptor bound to the rest of the pipeline.

    A plain (not async) ``__call__`` that returns the interceptor's awaitable: composing adds no
    coroutine frame per message.
    """

    __slots__ = ("call_next", "interceptor")

    def __init__(self, interceptor: Interceptor, call_next: Handler) -> None:
        self.interceptor = interceptor
        self.call_next = call_next

    def __call__(self, message: Message) -> Awaitable[Outcome]:
        return self.interceptor(message, self.call_next)


def build_pipeline(interceptors: Sequence[Interceptor], terminal: Handler) -> Handler:
    """Compose ``interceptors`` (outermost first) around ``terminal`` into one handler, once at startup."""
    handler = terminal
    for interceptor in reversed(interceptors):
        handler = _Step(interceptor, handler)
    return handler
