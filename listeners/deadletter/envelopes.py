"""The message to publish for a dead letter or a Kafka retry: destination, original bytes, headers."""

from __future__ import annotations

from listeners.deadletter.headers import Origin, kafka_dead_letter_headers, rabbit_dead_letter_headers
from listeners.deadletter.naming import kafka_dead_letter_topic, rabbit_dead_letter_queue
from listeners.message import Message
from listeners.outcome import Retry
from listeners.retry.kafka_wire import retry_headers, retry_state
from listeners.retry.timeout import retry_started_header
from listeners.transport.base import Endpoint, Envelope


def kafka_dead_letter(
    endpoint: Endpoint,
    message: Message,
    error: BaseException,
    partitions: set[int],
    *,
    source: str | None = None,
) -> Envelope:
    """``<topic>-dlt`` record: original key and value, original headers then ``kafka_dlt-*``.

    A record from one of the listener's retry topics (``source`` names the topic it first came from)
    goes to that topic's dead-letter topic, and the ``kafka_dlt-original-*`` headers describe the
    record that first failed there, as its ``kafka_original-*`` headers say. It goes to the
    record's partition when the dead-letter topic has it (``partitions``), else the key decides, as
    Spring's default destination resolver does.
    """
    source = source or message.destination
    retried = retry_state(message.headers)
    origin = None
    if source != message.destination and retried.original_topic is not None:
        origin = Origin(
            retried.original_topic,
            retried.original_partition or 0,
            retried.original_offset or 0,
            retried.original_timestamp_ms or 0,
        )
    headers = kafka_dead_letter_headers(
        message,
        error,
        group_id=endpoint.group_id,
        max_stacktrace=endpoint.options.dead_letter.max_stacktrace,
        origin=origin,
    )
    partition = message.partition if message.partition in partitions else None
    topic = kafka_dead_letter_topic(endpoint, source)
    return Envelope(topic, message.body, key=message.key, headers=headers, partition=partition)


def kafka_retry(message: Message, retry: Retry, *, topic: str, due_ms: int, partitions: set[int]) -> Envelope:
    """The record republished to retry topic ``topic`` for ``retry``: original key, value and headers
    plus the retry headers (Spring's, and when it first failed), on the record's partition when the
    retry topic has it (else by key)."""
    headers = retry_headers(message, retry.error, next_attempt=retry.next_attempt, due_ms=due_ms)
    headers += retry_started_header(message)
    partition = message.partition if message.partition in partitions else None
    return Envelope(topic, message.body, key=message.key, headers=headers, partition=partition)


def rabbit_dead_letter(
    endpoint: Endpoint, message: Message, error: BaseException, content_type: str | None
) -> Envelope:
    """A message for the listener's dead-letter queue, through the default exchange."""
    headers = rabbit_dead_letter_headers(
        message, error, max_stacktrace=endpoint.options.dead_letter.max_stacktrace
    )
    queue = rabbit_dead_letter_queue(endpoint)
    return Envelope("", message.body, routing_key=queue, headers=headers, content_type=content_type)
