"""Errors raised by listeners.

Every error the framework raises derives from :class:`ListenersError`. Client errors from aiokafka
and aio-pika are translated into this tree at the transport boundary, so application code and the
retry classifier never see broker-specific types. Whether an error is worth retrying is a property
of its class (``retryable``), refined per listener by the retry configuration.

::

    ListenersError
    ├── ConfigError                 invalid configuration (file, key path, reason)
    ├── DeclarationError            invalid @kafka_listener / @rabbit_listener / @send_to usage
    ├── StartupError                the application could not start (discovery, wiring, transports)
    ├── MessageError                a message cannot be handled as it is (fatal: never retried)
    │   ├── MessageDecodeError      payload or header could not be decoded / validated
    │   └── RejectMessage           raised by a handler: dead-letter this message now
    │   └── IdempotencyKeyError     the message has no usable idempotency key
    ├── RetryLater                  raised by a handler: retry this message after ``delay``
    ├── IdempotencyStoreError       an idempotency store operation failed (retryable)
    └── TransportError              a broker operation failed (retryable unless stated)
        ├── BrokerUnavailableError  cannot connect / connection lost
        ├── PublishError            a publish was not confirmed
        │   ├── UnroutableError     a publish reached no queue (fatal for that publish)
        │   └── MessageTooLargeError  the broker refuses a message this size (fatal)
        └── TransportUnavailableError  no transport implementation for this URL (fatal)
"""

from __future__ import annotations


class ListenersError(Exception):
    """Root of every error raised by listeners."""

    retryable: bool = False


class ConfigError(ListenersError):
    """Configuration is invalid. The message names the file, the key path and the reason."""


class DeclarationError(ListenersError):
    """A listener declaration is invalid. The message names the handler and the reason."""


class StartupError(ListenersError):
    """The application could not start; nothing was consumed."""


class MessageError(ListenersError):
    """A message that cannot be handled as it is; retrying would not help."""

    retryable = False


class MessageDecodeError(MessageError):
    """The payload (or a header parameter) could not be decoded into the handler's declared type."""


class RejectMessage(MessageError):
    """Raise from a handler to send the current message straight to the dead letter, without retries."""


class IdempotencyKeyError(MessageError):
    """The listener's ``idempotency_key`` cannot be read from this message (missing field or header,
    or the key function failed or returned something other than a non-empty string)."""


class RetryLater(ListenersError):
    """Raise from a handler to ask for a retry after ``delay`` seconds (or the configured back-off).

    The retry counts as an attempt; once attempts are exhausted the message is dead-lettered.
    """

    retryable = True

    def __init__(self, reason: str = "retry requested by handler", *, delay: float | None = None) -> None:
        super().__init__(reason)
        self.delay = delay


class IdempotencyStoreError(ListenersError):
    """An idempotency store could not be read or written (connection lost, server error)."""

    retryable = True


class TransportError(ListenersError):
    """A broker operation failed."""

    retryable = True


class BrokerUnavailableError(TransportError):
    """The broker cannot be reached or the connection was lost."""


class PublishError(TransportError):
    """A publish was not confirmed by the broker."""


class UnroutableError(PublishError):
    """A mandatory publish was returned by the broker: no queue is bound for it."""

    retryable = False


class MessageTooLargeError(PublishError):
    """The broker refuses a message of this size; sending it again cannot succeed."""

    retryable = False


class TransportUnavailableError(TransportError):
    """No transport implementation is available for the configured URL."""

    retryable = False
