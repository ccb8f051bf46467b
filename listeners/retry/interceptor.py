"""The error-handling step of the pipeline: a failed attempt becomes a Retry or a DeadLetter outcome."""

from __future__ import annotations

import asyncio
import logging

from listeners.clock import Clock, SystemClock
from listeners.durations import format_duration
from listeners.exceptions import RetryLater
from listeners.logs.context import message_fields
from listeners.message import Message
from listeners.outcome import Ack, DeadLetter, Outcome, Retry
from listeners.retry.backoff import BackOffPolicy
from listeners.retry.classifier import DefaultClassifier, ExceptionClassifier
from listeners.retry.timeout import first_failure
from listeners.runtime.pipeline import Handler
from listeners.spec import ListenerOptions

log = logging.getLogger("listeners.retry")


class ErrorHandler:
    """Turns an exception from the rest of the pipeline into what should happen to the message.

    A retryable failure with attempts left becomes ``Retry`` after the back-off delay (or the delay a
    handler gave with :class:`~listeners.exceptions.RetryLater`), unless that next attempt would start
    past ``retry.timeout`` from the message's first failure; anything else becomes ``DeadLetter``, or,
    with dead letters disabled, an ``Ack`` marked discarded and logged at ERROR.
    """

    def __init__(
        self,
        listener_id: str,
        options: ListenerOptions,
        *,
        classifier: ExceptionClassifier | None = None,
        backoff: BackOffPolicy | None = None,
        clock: Clock | None = None,
    ) -> None:
        self._listener_id = listener_id
        self._attempts = options.retry.attempts
        self._timeout = options.retry.timeout
        self._clock = clock or SystemClock()
        self._blocking = options.retry.mode == "blocking"
        self._dead_letter = options.dead_letter.enabled
        self._classifier = classifier or DefaultClassifier(
            options.retry.retryable, options.retry.not_retryable
        )
        self._backoff = backoff or BackOffPolicy.from_spec(options.retry.backoff)

    async def __call__(self, message: Message, call_next: Handler) -> Outcome:
        try:
            return await call_next(message)
        except asyncio.CancelledError:
            raise
        except Exception as error:
            return self.decide(message, error)

    def decide(self, message: Message, error: Exception) -> Outcome:
        """The outcome for ``message`` whose attempt failed with ``error``."""
        now = self._clock.time()
        started = message.retry_started = first_failure(message, now)
        retryable = self._classifier.is_retryable(error)
        reason = "not retryable"
        if retryable and message.attempt < self._attempts:
            tier = None
            delay = error.delay if isinstance(error, RetryLater) and error.delay is not None else None
            if delay is None:
                tier = self._backoff.base_delay(message.attempt)
                delay = self._backoff.delay(message.attempt)
            if self._timeout is None or now + delay <= started + self._timeout:
                return self._retry(message, error, delay, tier)
            reason = f"retry timeout {format_duration(self._timeout)} would pass before the next attempt"
        elif retryable:
            reason = "attempts exhausted"
        return self._give_up(message, error, reason)

    def _retry(self, message: Message, error: Exception, delay: float, tier: float | None) -> Retry:
        log.warning(
            "listener %s: attempt %d/%d failed for %s, retrying in %.3gs: %s: %s",
            self._listener_id,
            message.attempt,
            self._attempts,
            message.describe(),
            delay,
            type(error).__name__,
            error,
            extra=message_fields(message),
        )
        return Retry(delay, message.attempt + 1, error, blocking=self._blocking, tier=tier)

    def _give_up(self, message: Message, error: Exception, reason: str) -> Outcome:
        if self._dead_letter:
            log.error(
                "listener %s: %s (attempt %d) is dead-lettered, %s: %s: %s",
                self._listener_id,
                message.describe(),
                message.attempt,
                reason,
                type(error).__name__,
                error,
                exc_info=error,
                extra=message_fields(message),
            )
            return DeadLetter(error)
        log.error(
            "listener %s: %s (attempt %d) is DISCARDED (dead letters disabled), %s: %s: %s",
            self._listener_id,
            message.describe(),
            message.attempt,
            reason,
            type(error).__name__,
            error,
            exc_info=error,
            extra=message_fields(message),
        )
        return Ack(skipped="discarded", error=error)
