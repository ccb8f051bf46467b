"""Where a user's delayed publish waits (pure naming and wire rules, no broker calls).

``KafkaPublisher.send(..., delay=s)`` and ``RabbitPublisher.publish(..., delay=s)`` hold a message
back for ``s`` seconds. On the real brokers it waits here:

- **Kafka**: the record goes to the topic's delay topic ``<topic>-delay`` (as wide as the topic, the
  same key, value, headers and explicit partition) with the header ``retry_topic-backoff-timestamp``
  (its due time, epoch ms as Java BigInteger bytes, rounded up) appended last. Every listener of the
  topic also consumes its delay topic, pauses a partition at a record until it is due, and hands the
  record to the handler as a first delivery of ``<topic>`` without that header.
- **RabbitMQ**: the message goes to the headers exchange ``listeners.delay`` with its own routing
  key and two headers naming the target exchange and the delay; the exchange routes it to the delay
  queue ``listeners.delay.<exchange or amq.default>.<ms>`` (``x-message-ttl`` = ms, dead-letter
  exchange = the target exchange, no dead-letter routing key), from which RabbitMQ dead-letters it
  to the target exchange with its routing key once the TTL ran out. Header names starting with
  ``x-`` are ignored by headers exchanges, hence the ``listeners-delay-*`` names.
"""

from __future__ import annotations

import math
from typing import Any

from listeners.deadletter.headers import binary_int
from listeners.message import HeaderPairs
from listeners.retry.kafka_wire import BACKOFF_TIMESTAMP, due_at_ms, java_bigint
from listeners.transport.base import Envelope

KAFKA_DELAY_SUFFIX = "-delay"
DELAY_EXCHANGE = "listeners.delay"
"""The durable headers exchange every RabbitMQ delayed publish goes through."""
DELAY_EXCHANGE_HEADER = "listeners-delay-exchange"
DELAY_MS_HEADER = "listeners-delay-ms"
DEFAULT_EXCHANGE_NAME = "amq.default"
"""How the default exchange (``""``) appears in delay queue names, as the management UI shows it."""


def is_delayed(delay: float | None) -> bool:
    """Whether a publish asks to be held back (None and non-positive delays publish directly)."""
    return delay is not None and delay > 0


# Kafka ----------------------------------------------------------------------------------------------


def kafka_delay_topic(topic: str) -> str:
    """``orders`` -> ``orders-delay``."""
    return f"{topic}{KAFKA_DELAY_SUFFIX}"


def is_kafka_delay_topic(topic: str) -> bool:
    """Named like a delay topic (``<topic>-delay``)."""
    return topic.endswith(KAFKA_DELAY_SUFFIX) and len(topic) > len(KAFKA_DELAY_SUFFIX)


def kafka_delayed_source(topic: str) -> str:
    """``orders-delay`` -> ``orders`` (a name that is not a delay topic's is returned as it is)."""
    return topic[: -len(KAFKA_DELAY_SUFFIX)] if is_kafka_delay_topic(topic) else topic


def kafka_delayed_envelope(envelope: Envelope, now: float) -> Envelope:
    """``envelope`` (with a delay) as the record to write to its topic's delay topic, due
    ``envelope.delay`` seconds after ``now`` (epoch seconds); the due-time header comes last."""
    due_ms = due_at_ms(now, envelope.delay or 0.0)
    return Envelope(
        kafka_delay_topic(envelope.destination),
        envelope.body,
        key=envelope.key,
        headers=(*envelope.headers, (BACKOFF_TIMESTAMP, java_bigint(due_ms))),
        partition=envelope.partition,
        content_type=envelope.content_type,
    )


def kafka_delayed_headers(pairs: HeaderPairs) -> tuple[HeaderPairs, int | None]:
    """A delay-topic record's headers as the sender gave them, and its due time (epoch ms).

    The due time is the last header, as :func:`kafka_delayed_envelope` writes it; without it (a record
    someone else wrote) the record is due at once and its headers are kept whole.
    """
    if pairs and pairs[-1][0] == BACKOFF_TIMESTAMP:
        return pairs[:-1], binary_int(pairs[-1][1])
    return pairs, None


# RabbitMQ -------------------------------------------------------------------------------------------


def delay_ms_up(seconds: float) -> int:
    """A delay as whole milliseconds, rounded up so that nothing is delivered early (at least 1)."""
    return max(1, math.ceil(seconds * 1000))


def rabbit_delay_queue(exchange: str, ms: int) -> str:
    """``events`` and 1500 ms -> ``listeners.delay.events.1500``; the default exchange ``""`` ->
    ``listeners.delay.amq.default.1500``."""
    return f"{DELAY_EXCHANGE}.{exchange or DEFAULT_EXCHANGE_NAME}.{ms}"


def rabbit_delay_queue_arguments(exchange: str, ms: int) -> dict[str, Any]:
    """Hold each message ``ms``, then dead-letter it to ``exchange`` keeping its own routing key."""
    return {"x-message-ttl": ms, "x-dead-letter-exchange": exchange}


def rabbit_delay_binding(exchange: str, ms: int) -> dict[str, Any]:
    """Arguments binding the delay queue of (``exchange``, ``ms``) to :data:`DELAY_EXCHANGE`."""
    return {"x-match": "all", DELAY_EXCHANGE_HEADER: exchange, DELAY_MS_HEADER: str(ms)}


def rabbit_delayed_envelope(envelope: Envelope, ms: int) -> Envelope:
    """``envelope`` as published to :data:`DELAY_EXCHANGE`: the user's headers, then the two routing
    headers (last, so they win over user headers of the same name)."""
    headers = (
        *envelope.headers,
        (DELAY_EXCHANGE_HEADER, envelope.destination.encode()),
        (DELAY_MS_HEADER, str(ms).encode()),
    )
    return Envelope(
        DELAY_EXCHANGE,
        envelope.body,
        routing_key=envelope.routing_key,
        headers=headers,
        content_type=envelope.content_type,
    )
