"""Kafka retry-topic wire format, as Spring Kafka writes and reads it (pure functions).

A record republished for a later attempt goes to ``<topic>-retry-<delayMs>`` with its original key,
value and headers, plus:

- ``retry_topic-attempts``: the attempt number of the next delivery (4-byte big-endian int);
- ``retry_topic-backoff-timestamp``: epoch ms before which it must not run, and
  ``retry_topic-original-timestamp``: the original record's timestamp (both Java ``BigInteger``
  bytes: minimal big-endian two's complement);
- ``kafka_original-topic`` / ``-partition`` / ``-offset`` / ``-timestamp`` describing the record that
  first failed (kept from the first retry on), and ``kafka_exception-fqcn`` / ``-message`` for the
  latest failure (replaced on each retry).

Readers accept both the retry-path names (``kafka_original-*``) and the dead-letter names
(``kafka_dlt-original-*``); for a header written more than once, the last value wins.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from listeners.deadletter.headers import binary_int, exception_fqcn, int32, int64
from listeners.message import HeaderPairs, Headers, Message

ATTEMPTS = "retry_topic-attempts"
BACKOFF_TIMESTAMP = "retry_topic-backoff-timestamp"
ORIGINAL_TIMESTAMP = "retry_topic-original-timestamp"
ORIGINAL_TOPIC = "kafka_original-topic"
ORIGINAL_PARTITION = "kafka_original-partition"
ORIGINAL_OFFSET = "kafka_original-offset"
ORIGINAL_RECORD_TIMESTAMP = "kafka_original-timestamp"
EXCEPTION_FQCN = "kafka_exception-fqcn"
EXCEPTION_MESSAGE = "kafka_exception-message"

_DLT_ORIGINAL = {
    ORIGINAL_TOPIC: "kafka_dlt-original-topic",
    ORIGINAL_PARTITION: "kafka_dlt-original-partition",
    ORIGINAL_OFFSET: "kafka_dlt-original-offset",
    ORIGINAL_RECORD_TIMESTAMP: "kafka_dlt-original-timestamp",
}
_REPLACED_ON_RETRY = frozenset({ATTEMPTS, BACKOFF_TIMESTAMP, EXCEPTION_FQCN, EXCEPTION_MESSAGE})
MAX_EXCEPTION_MESSAGE = 1024
"""Bytes of the failure's message kept on a retried record (the full text goes to the dead letter)."""


def java_bigint(value: int) -> bytes:
    """``BigInteger.valueOf(value).toByteArray()``: minimal big-endian two's complement."""
    length = (value + (value < 0)).bit_length() // 8 + 1
    return value.to_bytes(length, "big", signed=True)


def from_java_bigint(data: bytes) -> int:
    """The value of ``new BigInteger(data)``."""
    return int.from_bytes(data, "big", signed=True)


def due_at_ms(now: float, delay: float) -> int:
    """The ``retry_topic-backoff-timestamp`` for a retry ``delay`` seconds after ``now`` (epoch seconds),
    rounded up: whole milliseconds must never make a retry due early."""
    return math.ceil((now + delay) * 1000)


@dataclass(frozen=True, slots=True)
class RetryState:
    """What a record's headers say about its retries. ``original_*`` are None on a first delivery."""

    attempt: int
    due_ms: int | None
    original_topic: str | None
    original_partition: int | None
    original_offset: int | None
    original_timestamp_ms: int | None


def retry_state(headers: Headers) -> RetryState:
    """Read the retry headers of a consumed record (ours or Spring's); malformed ones are ignored."""
    if not headers.pairs:
        return _FIRST_DELIVERY
    index = dict(headers.pairs)  # last value wins
    attempts = binary_int(index.get(ATTEMPTS))
    original = _original(index, ORIGINAL_TOPIC)
    return RetryState(
        attempt=attempts if attempts is not None and attempts >= 1 else 1,
        due_ms=binary_int(index.get(BACKOFF_TIMESTAMP)),
        original_topic=original.decode("utf-8", errors="replace") if original is not None else None,
        original_partition=binary_int(_original(index, ORIGINAL_PARTITION)),
        original_offset=binary_int(_original(index, ORIGINAL_OFFSET)),
        original_timestamp_ms=binary_int(index.get(ORIGINAL_TIMESTAMP))
        or binary_int(_original(index, ORIGINAL_RECORD_TIMESTAMP)),
    )


_FIRST_DELIVERY = RetryState(1, None, None, None, None, None)


def retry_headers(message: Message, error: BaseException, *, next_attempt: int, due_ms: int) -> HeaderPairs:
    """Headers of ``message`` republished to a retry topic for attempt ``next_attempt``, due at ``due_ms``.

    The original headers stay byte for byte and in order, except the per-retry ones written here again.
    """
    headers = message.headers
    state = retry_state(headers)
    kept = [(name, value) for name, value in headers.pairs if name not in _REPLACED_ON_RETRY]
    timestamp_ms = int((message.timestamp or 0.0) * 1000)
    # Not from a retry topic: this is its first retry, so remember where the record came from, even
    # if it carries an earlier failure's kafka_dlt-original-* headers (a replayed dead letter).
    first_retry = ATTEMPTS not in headers or state.original_topic is None
    if first_retry:
        kept += [
            (ORIGINAL_TOPIC, message.destination.encode()),
            (ORIGINAL_PARTITION, int32(message.partition or 0)),
            (ORIGINAL_OFFSET, int64(message.offset or 0)),
            (ORIGINAL_RECORD_TIMESTAMP, int64(timestamp_ms)),
        ]
    if ORIGINAL_TIMESTAMP not in headers:
        original_ms = state.original_timestamp_ms
        kept.append(
            (
                ORIGINAL_TIMESTAMP,
                java_bigint(timestamp_ms if first_retry or original_ms is None else original_ms),
            )
        )
    kept += [
        (EXCEPTION_FQCN, exception_fqcn(error).encode()),
        (EXCEPTION_MESSAGE, str(error).encode()[:MAX_EXCEPTION_MESSAGE]),
        (ATTEMPTS, int32(next_attempt)),
        (BACKOFF_TIMESTAMP, java_bigint(due_ms)),
    ]
    return tuple(kept)


def _original(index: dict[str, bytes], name: str) -> bytes | None:
    value = index.get(name)
    return value if value is not None else index.get(_DLT_ORIGINAL[name])
