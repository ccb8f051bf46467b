"""Spring Kafka's retry-topic wire format: Java BigInteger bytes, headers written and read, tier names."""

from __future__ import annotations

import pytest

from listeners.deadletter.envelopes import kafka_dead_letter
from listeners.message import Headers, Message
from listeners.retry.destinations import (
    kafka_retry_topic,
    kafka_retry_topics,
    kafka_source_topic,
    rabbit_retry_queue,
    retry_tiers,
    tier_for,
)
from listeners.retry.kafka_wire import due_at_ms, from_java_bigint, java_bigint, retry_headers, retry_state
from listeners.spec import ListenerOptions
from listeners.transport.base import Endpoint

# BigInteger.valueOf(v).toByteArray() as the JVM returns it.
JAVA_BIGINTEGER = [
    (0, b"\x00"),
    (1, b"\x01"),
    (127, b"\x7f"),
    (128, b"\x00\x80"),
    (255, b"\x00\xff"),
    (256, b"\x01\x00"),
    (-1, b"\xff"),
    (-128, b"\x80"),
    (-129, b"\xff\x7f"),
    (1_700_000_000_000, b"\x01\x8b\xcf\xe5\x68\x00"),
    (2**63 - 1, b"\x7f\xff\xff\xff\xff\xff\xff\xff"),
]


@pytest.mark.parametrize(("value", "encoded"), JAVA_BIGINTEGER)
def test_java_biginteger_bytes_round_trip(value: int, encoded: bytes) -> None:
    assert java_bigint(value) == encoded
    assert from_java_bigint(encoded) == value


def record(headers: tuple[tuple[str, bytes], ...] = (), topic: str = "orders", offset: int = 41) -> Message:
    return Message(
        body=b'{"id": 1}',
        headers=Headers(headers),
        destination=topic,
        listener_id="billing",
        transport="kafka",
        key=b"k-1",
        partition=2,
        offset=offset,
        timestamp=1_700_000_000.5,
        group_id="billing",
    )


def test_first_retry_keeps_headers_and_records_the_origin() -> None:
    message = record((("trace", b"abc"), ("trace", b"def")))
    headers = retry_headers(message, ValueError("boom"), next_attempt=2, due_ms=1_700_000_001_500)
    assert headers == (
        ("trace", b"abc"),
        ("trace", b"def"),
        ("kafka_original-topic", b"orders"),
        ("kafka_original-partition", b"\x00\x00\x00\x02"),
        ("kafka_original-offset", (41).to_bytes(8, "big")),
        ("kafka_original-timestamp", (1_700_000_000_500).to_bytes(8, "big")),
        ("retry_topic-original-timestamp", java_bigint(1_700_000_000_500)),
        ("kafka_exception-fqcn", b"ValueError"),
        ("kafka_exception-message", b"boom"),
        ("retry_topic-attempts", b"\x00\x00\x00\x02"),
        ("retry_topic-backoff-timestamp", java_bigint(1_700_000_001_500)),
    )


def test_a_second_retry_replaces_the_per_retry_headers_and_keeps_the_origin() -> None:
    first = record()
    on_retry_topic = record(
        retry_headers(first, ValueError("one"), next_attempt=2, due_ms=1_000),
        topic="orders-retry-1000",
        offset=7,
    )
    headers = retry_headers(on_retry_topic, KeyError("two"), next_attempt=3, due_ms=5_000)
    names = [name for name, _ in headers]
    for once in ("retry_topic-attempts", "retry_topic-backoff-timestamp", "kafka_original-topic"):
        assert names.count(once) == 1, once
    state = retry_state(Headers(headers))
    assert (state.attempt, state.due_ms) == (3, 5_000)
    assert (state.original_topic, state.original_partition, state.original_offset) == ("orders", 2, 41)
    assert state.original_timestamp_ms == 1_700_000_000_500
    assert dict(headers)["kafka_exception-fqcn"] == b"KeyError"


def test_a_replayed_dead_letter_retried_again_describes_where_it_failed_this_time() -> None:
    """Replay keeps the kafka_dlt-original-* headers of the earlier failure but strips the retry state;
    its next retry must describe the replayed record, not the earlier failure."""
    earlier = (
        ("kafka_dlt-original-topic", b"orders"),
        ("kafka_dlt-original-partition", (0).to_bytes(4, "big")),
        ("kafka_dlt-original-offset", (3).to_bytes(8, "big")),
        ("kafka_dlt-original-timestamp", (1_600_000_000_000).to_bytes(8, "big")),
    )
    replayed = record(earlier, offset=90)
    headers = retry_headers(replayed, ValueError("again"), next_attempt=2, due_ms=1_000)
    state = retry_state(Headers(headers))
    assert (state.original_topic, state.original_partition, state.original_offset) == ("orders", 2, 90)
    assert state.original_timestamp_ms == 1_700_000_000_500
    assert headers[: len(earlier)] == earlier, "the replayed record's own headers stay as they were"


def test_headers_as_spring_writes_them_are_understood() -> None:
    """Spring's DeadLetterPublishingRecoverer on the retry path: int attempts, BigInteger timestamps,
    and the kafka_dlt-original-* names; a header written twice counts with its last value."""
    spring = Headers(
        (
            ("kafka_dlt-original-topic", b"payments"),
            ("kafka_dlt-original-partition", (1).to_bytes(4, "big")),
            ("kafka_dlt-original-offset", (99).to_bytes(8, "big")),
            ("kafka_dlt-original-timestamp", (1_600_000_000_000).to_bytes(8, "big")),
            ("retry_topic-attempts", (2).to_bytes(4, "big")),
            ("retry_topic-attempts", (3).to_bytes(4, "big")),
            ("retry_topic-backoff-timestamp", java_bigint(1_600_000_004_000)),
            ("retry_topic-original-timestamp", java_bigint(1_600_000_000_000)),
        )
    )
    state = retry_state(spring)
    assert state.attempt == 3
    assert state.due_ms == 1_600_000_004_000
    assert (state.original_topic, state.original_partition, state.original_offset) == ("payments", 1, 99)
    assert state.original_timestamp_ms == 1_600_000_000_000


def test_records_without_or_with_malformed_retry_headers_are_first_deliveries() -> None:
    assert retry_state(Headers()).attempt == 1
    broken = Headers((("retry_topic-attempts", b""), ("retry_topic-backoff-timestamp", b"x" * 40)))
    state = retry_state(broken)
    assert (state.attempt, state.due_ms) == (1, None)


def test_a_dead_letter_from_a_retry_topic_goes_to_the_source_topic_dlt_describing_the_first_failure() -> None:
    endpoint = Endpoint("billing", "kafka", ListenerOptions(topics=("orders",)))
    first = record()
    retried = record(
        retry_headers(first, ValueError("one"), next_attempt=2, due_ms=1_000),
        topic="orders-retry-1000",
        offset=7,
    )
    envelope = kafka_dead_letter(endpoint, retried, ValueError("last"), partitions={0, 1, 2}, source="orders")
    headers = dict(envelope.headers)
    assert envelope.destination == "orders-dlt"
    assert envelope.partition == 2
    assert (envelope.key, envelope.body) == (b"k-1", b'{"id": 1}')
    assert headers["kafka_dlt-original-topic"] == b"orders"
    assert headers["kafka_dlt-original-offset"] == (41).to_bytes(8, "big")
    assert headers["kafka_dlt-exception-message"] == b"last"


def test_a_dead_letter_topic_listener_dead_letters_its_records_where_they_are_not_where_they_came_from() -> (
    None
):
    endpoint = Endpoint("dlt-reader", "kafka", ListenerOptions(topics=("orders-dlt",)))
    spring_dlt_record = record((("kafka_dlt-original-topic", b"orders"),), topic="orders-dlt", offset=3)
    envelope = kafka_dead_letter(endpoint, spring_dlt_record, ValueError("again"), partitions={0})
    assert envelope.destination == "orders-dlt-dlt"
    assert dict(envelope.headers)["kafka_dlt-original-topic"] == b"orders-dlt"


def non_blocking(attempts: int, **backoff: object) -> ListenerOptions:
    return ListenerOptions.model_validate(
        {"topics": ("orders",), "retry": {"attempts": attempts, "mode": "non-blocking", "backoff": backoff}}
    )


def test_tiers_follow_the_unjittered_backoff_and_equal_delays_share_one() -> None:
    exponential = non_blocking(5, delay=1.0, multiplier=2.0, max_delay=5.0, jitter=0.5)
    assert retry_tiers(exponential) == (1000, 2000, 4000, 5000)
    assert kafka_retry_topics(exponential, "orders") == (
        "orders-retry-1000",
        "orders-retry-2000",
        "orders-retry-4000",
        "orders-retry-5000",
    )
    fixed = non_blocking(4, delay=0.25, multiplier=1.0)
    assert retry_tiers(fixed) == (250,)
    blocking = ListenerOptions(topics=("orders",))
    assert retry_tiers(blocking) == ()
    assert rabbit_retry_queue("mails", 250) == "mails.retry.250"


def test_tier_for_a_handlers_own_delay_and_source_topic_names() -> None:
    assert tier_for((1000, 2000, 4000), 3000) == 2000
    assert tier_for((1000, 2000), 500) == 1000
    assert kafka_retry_topic("orders", 2000) == "orders-retry-2000"
    assert kafka_source_topic("orders-retry-2000") == "orders"
    assert kafka_source_topic("orders-retry-2000", "orders.v2") == "orders.v2"
    assert kafka_source_topic("orders") == "orders"


def test_due_times_round_up_to_the_millisecond_so_a_retry_is_never_due_early() -> None:
    assert due_at_ms(1_700_000_000.0001, 0.3) == 1_700_000_000_301
    assert due_at_ms(1_700_000_000.0, 1.0) == 1_700_000_001_000
