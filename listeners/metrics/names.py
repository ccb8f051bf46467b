"""Instrument and attribute names: the OpenTelemetry messaging conventions, and ``listeners.*`` for the
framework's own (retries, dead letters, duplicates, in-flight work, lag)."""

from __future__ import annotations

from typing import Final

from listeners.spec import TransportKind

METER_NAME: Final = "listeners"

PROCESS_DURATION: Final = "messaging.process.duration"
CONSUMED_MESSAGES: Final = "messaging.client.consumed.messages"
SENT_MESSAGES: Final = "messaging.client.sent.messages"

PROCESSED: Final = "listeners.listener.processed"
FAILED: Final = "listeners.listener.failed"
RETRIES: Final = "listeners.listener.retries"
DEAD_LETTERS: Final = "listeners.listener.dead_letters"
DUPLICATES_SKIPPED: Final = "listeners.listener.duplicates_skipped"
DISCARDED: Final = "listeners.listener.discarded"
RELEASED: Final = "listeners.listener.released"
STORE_ERRORS: Final = "listeners.listener.idempotency_store_errors"
IN_FLIGHT: Final = "listeners.listener.in_flight"
CONSUMER_LAG: Final = "listeners.consumer.lag"
TIME_LAG: Final = "listeners.consumer.time_lag"

SYSTEM: Final = "messaging.system"
DESTINATION: Final = "messaging.destination.name"
CONSUMER_GROUP: Final = "messaging.consumer.group.name"
PARTITION: Final = "messaging.destination.partition.id"
OPERATION_NAME: Final = "messaging.operation.name"
OPERATION_TYPE: Final = "messaging.operation.type"
ERROR_TYPE: Final = "error.type"
LISTENER_ID: Final = "listeners.listener.id"

SYSTEMS: Final[dict[TransportKind, str]] = {"kafka": "kafka", "rabbit": "rabbitmq"}

DURATION_BUCKETS: Final = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0)
"""The bucket boundaries (seconds) the messaging conventions recommend for duration histograms."""


def error_type(error: BaseException) -> str:
    """``error.type``: the exception's qualified class name (builtins without their module)."""
    cls = type(error)
    return cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"
