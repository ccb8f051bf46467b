"""Diagnostic headers on dead letters, in the formats Spring writes them (pure functions).

Kafka (Spring Kafka ``DeadLetterPublishingRecoverer``): ``kafka_dlt-original-topic`` (UTF-8),
``-original-partition`` (4-byte big-endian int), ``-original-offset`` and ``-original-timestamp``
(8-byte big-endian long, epoch ms), ``-original-consumer-group``, ``kafka_dlt-exception-fqcn``,
``-exception-cause-fqcn``, ``-exception-message`` and ``-exception-stacktrace`` (truncated). They are
appended after the original headers, which are kept byte for byte.

RabbitMQ (Spring AMQP ``RepublishMessageRecoverer``): ``x-exception-message``,
``x-exception-stacktrace`` (truncated), ``x-original-exchange``, ``x-original-routingKey``, plus
``x-exception-fqcn`` and ``retry-count`` (attempts made; RabbitMQ 4 ignores client-set ``x-death``).
"""

from __future__ import annotations

import traceback
from dataclasses import dataclass

from listeners.message import HeaderPairs, Message
from listeners.retry.classifier import cause_chain

BROKER_DEATH_HEADERS = ("x-death", "x-first-death-", "x-last-death-")
"""Written by RabbitMQ when a queue dead-letters a message (a delay tier, a TTL queue); meaningless
on a copy a client republishes (and a client cannot write them back as the tables they were)."""
_MAX_INT_BYTES = 16


def int32(value: int) -> bytes:
    return value.to_bytes(4, "big", signed=True)


def int64(value: int) -> bytes:
    return value.to_bytes(8, "big", signed=True)


def binary_int(data: bytes | None) -> int | None:
    """A big-endian signed int header (a Java int, long or BigInteger); None if absent or malformed."""
    if not data or len(data) > _MAX_INT_BYTES:
        return None
    return int.from_bytes(data, "big", signed=True)


def decimal_int(data: bytes | None) -> int | None:
    """An int written as ASCII decimal text (``retry-count``, epoch ms); None if absent or malformed."""
    if not data or len(data) > 2 * _MAX_INT_BYTES:
        return None
    try:
        return int(data.decode("ascii").strip())
    except (UnicodeDecodeError, ValueError):
        return None


def exception_fqcn(error: BaseException) -> str:
    """``module.QualName`` of the error's class (bare name for builtins), as Java's FQCN."""
    cls = type(error)
    return cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"


def root_cause(error: BaseException) -> BaseException:
    """The innermost exception of the cause chain."""
    *_, last = cause_chain(error)
    return last


def stacktrace(error: BaseException, limit: int) -> str:
    """The formatted traceback, cut to at most ``limit`` UTF-8 bytes (0 means none)."""
    if limit <= 0:
        return ""
    text = "".join(traceback.format_exception(error))
    encoded = text.encode("utf-8")
    if len(encoded) <= limit:
        return text
    return encoded[:limit].decode("utf-8", errors="ignore")


@dataclass(frozen=True, slots=True)
class Origin:
    """The record a dead letter stands for: the one that first failed, before any retry topic."""

    topic: str
    partition: int
    offset: int
    timestamp_ms: int

    @classmethod
    def of(cls, message: Message) -> Origin:
        timestamp_ms = int((message.timestamp or 0.0) * 1000)
        return cls(message.destination, message.partition or 0, message.offset or 0, timestamp_ms)


def kafka_dead_letter_headers(
    message: Message,
    error: BaseException,
    *,
    group_id: str,
    max_stacktrace: int,
    origin: Origin | None = None,
) -> HeaderPairs:
    """The original headers followed by Spring's ``kafka_dlt-*`` headers for ``message``.

    ``origin`` (default: the message itself) is what the ``kafka_dlt-original-*`` headers describe.
    """
    origin = origin or Origin.of(message)
    added: list[tuple[str, bytes]] = [
        ("kafka_dlt-original-topic", origin.topic.encode()),
        ("kafka_dlt-original-partition", int32(origin.partition)),
        ("kafka_dlt-original-offset", int64(origin.offset)),
        ("kafka_dlt-original-timestamp", int64(origin.timestamp_ms)),
        ("kafka_dlt-original-timestamp-type", b"CreateTime"),
        ("kafka_dlt-original-consumer-group", group_id.encode()),
        ("kafka_dlt-exception-fqcn", exception_fqcn(error).encode()),
    ]
    cause = root_cause(error)
    if cause is not error:
        added.append(("kafka_dlt-exception-cause-fqcn", exception_fqcn(cause).encode()))
    added.append(("kafka_dlt-exception-message", str(error).encode()))
    added.append(("kafka_dlt-exception-stacktrace", stacktrace(error, max_stacktrace).encode()))
    return (*message.headers.pairs, *added)


def rabbit_dead_letter_headers(message: Message, error: BaseException, *, max_stacktrace: int) -> HeaderPairs:
    """The original headers with Spring AMQP's ``x-exception-*`` / ``x-original-*`` headers set."""
    replaced = {
        "x-exception-message": str(error).encode(),
        "x-exception-stacktrace": stacktrace(error, max_stacktrace).encode(),
        "x-exception-fqcn": exception_fqcn(error).encode(),
        "x-original-exchange": (message.exchange or "").encode(),
        "x-original-routingKey": (message.routing_key or "").encode(),
        "retry-count": str(message.attempt).encode(),
    }
    kept = tuple(
        (name, value)
        for name, value in message.headers.pairs
        if name not in replaced and not name.startswith(BROKER_DEATH_HEADERS)
    )
    return (*kept, *replaced.items())
