"""The pure rules of delayed publishing: Kafka delay-topic names and records, RabbitMQ delay queues."""

from __future__ import annotations

import pytest

from listeners.retry.delayed import (
    DELAY_EXCHANGE,
    delay_ms_up,
    is_delayed,
    is_kafka_delay_topic,
    kafka_delay_topic,
    kafka_delayed_envelope,
    kafka_delayed_headers,
    kafka_delayed_source,
    rabbit_delay_binding,
    rabbit_delay_queue,
    rabbit_delay_queue_arguments,
    rabbit_delayed_envelope,
)
from listeners.retry.kafka_wire import from_java_bigint, java_bigint
from listeners.transport.base import Envelope


@pytest.mark.parametrize(("delay", "delayed"), [(None, False), (0, False), (-1.0, False), (0.001, True)])
def test_only_positive_delays_hold_a_message_back(delay: float | None, delayed: bool) -> None:
    assert is_delayed(delay) is delayed


def test_kafka_delay_topic_names() -> None:
    assert kafka_delay_topic("orders") == "orders-delay"
    assert is_kafka_delay_topic("orders-delay")
    assert not is_kafka_delay_topic("orders")
    assert not is_kafka_delay_topic("-delay")
    assert kafka_delayed_source("orders-delay") == "orders"
    assert kafka_delayed_source("orders") == "orders"


def test_a_delayed_kafka_record_keeps_everything_and_carries_its_due_time_last() -> None:
    envelope = Envelope(
        "orders",
        b"v",
        key=b"k",
        headers=(("trace", b"t"),),
        partition=2,
        content_type="text/plain",
        delay=1.5,
    )
    routed = kafka_delayed_envelope(envelope, now=1000.0001)
    assert (routed.destination, routed.body, routed.key, routed.partition) == ("orders-delay", b"v", b"k", 2)
    assert routed.delay is None
    assert routed.headers[0] == ("trace", b"t")
    name, value = routed.headers[-1]
    assert name == "retry_topic-backoff-timestamp"
    assert from_java_bigint(value) == 1_001_501, "rounded up to the millisecond, never early"
    assert value == java_bigint(1_001_501)


def test_reading_a_delay_record_drops_only_the_trailing_due_time() -> None:
    due = java_bigint(1_700_000_000_123)
    sent = (("retry_topic-backoff-timestamp", java_bigint(5)), ("trace", b"t"))
    assert kafka_delayed_headers((*sent, ("retry_topic-backoff-timestamp", due))) == (sent, 1_700_000_000_123)
    assert kafka_delayed_headers(sent) == (sent, None), "not ours: due at once, headers whole"
    assert kafka_delayed_headers(()) == ((), None)


@pytest.mark.parametrize(("seconds", "ms"), [(0.3, 300), (0.0001, 1), (1.0004, 1001), (2, 2000)])
def test_rabbit_delays_are_whole_milliseconds_rounded_up(seconds: float, ms: int) -> None:
    assert delay_ms_up(seconds) == ms


def test_rabbit_delay_queue_names_arguments_and_binding() -> None:
    assert rabbit_delay_queue("events", 1500) == "listeners.delay.events.1500"
    assert rabbit_delay_queue("", 300) == "listeners.delay.amq.default.300"
    assert rabbit_delay_queue_arguments("events", 1500) == {
        "x-message-ttl": 1500,
        "x-dead-letter-exchange": "events",
    }
    assert rabbit_delay_binding("", 300) == {
        "x-match": "all",
        "listeners-delay-exchange": "",
        "listeners-delay-ms": "300",
    }


def test_a_delayed_rabbit_message_goes_to_the_delay_exchange_with_its_own_routing_key() -> None:
    envelope = Envelope(
        "events",
        b"{}",
        routing_key="order.created",
        headers=(("listeners-delay-ms", b"1"), ("trace", b"t")),
        content_type="application/json",
        delay=0.25,
    )
    routed = rabbit_delayed_envelope(envelope, 250)
    assert (routed.destination, routed.routing_key, routed.body) == (DELAY_EXCHANGE, "order.created", b"{}")
    assert routed.content_type == "application/json"
    assert routed.delay is None
    assert dict(routed.headers) == {
        "listeners-delay-ms": b"250",
        "trace": b"t",
        "listeners-delay-exchange": b"events",
    }, "the routing headers come last and win"
