"""Dead-letter destination names: ``<topic>-dlt`` (Spring Kafka) and ``<queue>.dlq``, unless configured."""

from __future__ import annotations

from listeners.transport.base import Endpoint

KAFKA_DLT_SUFFIX = "-dlt"
RABBIT_DLQ_SUFFIX = ".dlq"


def kafka_dead_letter_topic(endpoint: Endpoint, topic: str) -> str:
    """The DLT for records of ``topic`` consumed by ``endpoint``."""
    return endpoint.options.dead_letter.destination or f"{topic}{KAFKA_DLT_SUFFIX}"


def rabbit_dead_letter_queue(endpoint: Endpoint) -> str:
    """The dead-letter queue of a RabbitMQ listener (published through the default exchange)."""
    return endpoint.options.dead_letter.destination or f"{endpoint.options.queue}{RABBIT_DLQ_SUFFIX}"
