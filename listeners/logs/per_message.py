"""``listeners.logging.per_message``: one line per handled message, as a pipeline step."""

from __future__ import annotations

import logging
import time

from listeners.logs.context import message_fields
from listeners.message import Message
from listeners.outcome import Outcome
from listeners.runtime.pipeline import Handler

LOGGER = "listeners.messages"


class MessageLog:
    """Logs every handled message at INFO (``listener billing: orders[2]@15 (attempt 1) Ack in 0.4 ms``)
    with its fields; a failed attempt is logged at INFO too (its retry or dead letter is logged at
    WARNING/ERROR by the error handler) and the exception goes on. Installed inside the tracing step,
    its lines carry the message's trace id. Off by default: a line per message costs throughput."""

    def __init__(self, logger: logging.Logger | None = None) -> None:
        self._log = logger or logging.getLogger(LOGGER)

    async def __call__(self, message: Message, call_next: Handler) -> Outcome:
        started = time.perf_counter()
        try:
            outcome = await call_next(message)
        except Exception as error:
            self._log.info(
                "listener %s: %s (attempt %d) failed in %.1f ms: %s: %s",
                message.listener_id,
                message.describe(),
                message.attempt,
                (time.perf_counter() - started) * 1000,
                type(error).__name__,
                error,
                extra=message_fields(message),
            )
            raise
        self._log.info(
            "listener %s: %s (attempt %d) %s in %.1f ms",
            message.listener_id,
            message.describe(),
            message.attempt,
            type(outcome).__name__,
            (time.perf_counter() - started) * 1000,
            extra=message_fields(message),
        )
        return outcome
