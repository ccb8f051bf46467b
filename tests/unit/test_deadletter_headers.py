"""Dead-letter diagnostic headers in Spring's byte formats, and dead-letter destination names."""

from __future__ import annotations

import struct
import traceback

import pytest

from listeners.deadletter.headers import (
    exception_fqcn,
    kafka_dead_letter_headers,
    rabbit_dead_letter_headers,
    root_cause,
    stacktrace,
)
from listeners.deadletter.naming import kafka_dead_letter_topic, rabbit_dead_letter_queue
from listeners.message import HeaderPairs, Headers, Message
from listeners.spec import DeadLetter, ListenerOptions
from listeners.transport.base import Endpoint

KAFKA_DLT_NAMES = {
    "kafka_dlt-original-topic",
    "kafka_dlt-original-partition",
    "kafka_dlt-original-offset",
    "kafka_dlt-original-timestamp",
    "kafka_dlt-original-consumer-group",
    "kafka_dlt-exception-fqcn",
    "kafka_dlt-exception-message",
    "kafka_dlt-exception-stacktrace",
}
RABBIT_DLQ_NAMES = {
    "x-exception-message",
    "x-exception-stacktrace",
    "x-exception-fqcn",
    "x-original-exchange",
    "x-original-routingKey",
    "retry-count",
}


class PaymentFailed(Exception):
    pass


def raised(error: BaseException, cause: BaseException | None = None) -> BaseException:
    """``error`` after being raised (so it has a traceback), optionally ``from cause``."""
    try:
        if cause is None:
            raise error
        try:
            raise cause
        except BaseException as caught:
            raise error from caught
    except BaseException as caught:
        return caught


def kafka_message(headers: HeaderPairs = (), **fields: object) -> Message:
    values: dict[str, object] = {
        "body": b'{"id": 1}',
        "headers": Headers(headers),
        "destination": "orders",
        "listener_id": "billing",
        "transport": "kafka",
        "partition": 3,
        "offset": 42,
        "timestamp": 1_700_000_000.123,
        "group_id": "billing-group",
    }
    values.update(fields)
    return Message(**values)  # type: ignore[arg-type]


def rabbit_message(headers: HeaderPairs = (), **fields: object) -> Message:
    values: dict[str, object] = {
        "body": b"payload",
        "headers": Headers(headers),
        "destination": "work",
        "listener_id": "worker",
        "transport": "rabbit",
        "exchange": "events",
        "routing_key": "orders.created",
        "attempt": 3,
    }
    values.update(fields)
    return Message(**values)  # type: ignore[arg-type]


def added(result: HeaderPairs, original: HeaderPairs) -> dict[str, bytes]:
    assert result[: len(original)] == original
    extra = result[len(original) :]
    names = [name for name, _ in extra]
    assert len(names) == len(set(names)), "each diagnostic header is added once"
    return dict(extra)


# Kafka ------------------------------------------------------------------------------------------------


def test_kafka_headers_carry_the_original_position_in_springs_byte_formats() -> None:
    headers = added(
        kafka_dead_letter_headers(
            kafka_message(), ValueError("bad"), group_id="billing-group", max_stacktrace=4096
        ),
        (),
    )

    assert headers.keys() >= KAFKA_DLT_NAMES
    assert headers["kafka_dlt-original-topic"] == b"orders"
    assert headers["kafka_dlt-original-partition"] == struct.pack(">i", 3)
    assert headers["kafka_dlt-original-offset"] == struct.pack(">q", 42)
    assert headers["kafka_dlt-original-timestamp"] == struct.pack(">q", 1_700_000_000_123)
    assert headers["kafka_dlt-original-consumer-group"] == b"billing-group"


def test_kafka_numeric_headers_have_java_int_and_long_widths() -> None:
    message = kafka_message(partition=2**31 - 1, offset=2**62, timestamp=0.0)

    headers = added(kafka_dead_letter_headers(message, ValueError(), group_id="g", max_stacktrace=0), ())

    assert len(headers["kafka_dlt-original-partition"]) == 4
    assert struct.unpack(">i", headers["kafka_dlt-original-partition"]) == (2**31 - 1,)
    assert len(headers["kafka_dlt-original-offset"]) == 8
    assert struct.unpack(">q", headers["kafka_dlt-original-offset"]) == (2**62,)
    assert headers["kafka_dlt-original-timestamp"] == bytes(8)


def test_kafka_timestamp_survives_the_millisecond_to_seconds_conversion() -> None:
    # The transport turns Kafka's epoch-ms into float seconds; the header must give back the same ms.
    for ms in (1_700_000_000_001, 1_700_000_000_123, 1_712_345_678_999, 1_650_000_000_555):
        message = kafka_message(timestamp=ms / 1000)
        headers = added(kafka_dead_letter_headers(message, ValueError(), group_id="g", max_stacktrace=0), ())
        assert struct.unpack(">q", headers["kafka_dlt-original-timestamp"]) == (ms,)


def test_kafka_strings_are_utf8() -> None:
    message = kafka_message(destination="bestellungen-ü")
    error = ValueError("Zahlung für Bestellung € fehlgeschlagen")

    headers = added(kafka_dead_letter_headers(message, error, group_id="grüppe", max_stacktrace=0), ())

    assert headers["kafka_dlt-original-topic"] == "bestellungen-ü".encode()
    assert headers["kafka_dlt-original-consumer-group"] == "grüppe".encode()
    assert headers["kafka_dlt-exception-message"] == "Zahlung für Bestellung € fehlgeschlagen".encode()


def test_kafka_consumer_group_comes_from_the_argument() -> None:
    headers = added(
        kafka_dead_letter_headers(
            kafka_message(group_id="other"), ValueError(), group_id="g1", max_stacktrace=0
        ),
        (),
    )

    assert headers["kafka_dlt-original-consumer-group"] == b"g1"


def test_original_headers_are_kept_first_byte_for_byte_including_duplicates() -> None:
    original: HeaderPairs = (
        ("trace", b"\x00\x01\xff"),
        ("dup", b"first"),
        ("other", b""),
        ("dup", b"second"),
        ("kafka_dlt-original-topic", b"from-an-earlier-dead-letter"),
    )

    result = kafka_dead_letter_headers(
        kafka_message(headers=original), ValueError("x"), group_id="g", max_stacktrace=100
    )

    assert result[: len(original)] == original
    assert [name for name, _ in result].count("dup") == 2
    # Readers take the last value, so the new header wins over the carried-over one.
    assert Headers(result)["kafka_dlt-original-topic"] == b"orders"


def test_exception_fqcn_is_module_and_qualname_or_bare_for_builtins() -> None:
    assert exception_fqcn(ValueError()) == "ValueError"
    assert exception_fqcn(PaymentFailed()) == f"{__name__}.PaymentFailed"


def test_kafka_exception_fqcn_and_message() -> None:
    headers = added(
        kafka_dead_letter_headers(
            kafka_message(), PaymentFailed("card declined"), group_id="g", max_stacktrace=0
        ),
        (),
    )

    assert headers["kafka_dlt-exception-fqcn"] == f"{__name__}.PaymentFailed".encode()
    assert headers["kafka_dlt-exception-message"] == b"card declined"


def test_cause_fqcn_is_absent_without_a_cause() -> None:
    headers = added(
        kafka_dead_letter_headers(kafka_message(), raised(ValueError("x")), group_id="g", max_stacktrace=0),
        (),
    )

    assert "kafka_dlt-exception-cause-fqcn" not in headers


def test_cause_fqcn_names_the_cause_when_there_is_one() -> None:
    error = raised(RuntimeError("handler failed"), cause=PaymentFailed("declined"))

    headers = added(kafka_dead_letter_headers(kafka_message(), error, group_id="g", max_stacktrace=0), ())

    assert headers["kafka_dlt-exception-fqcn"] == b"RuntimeError"
    assert headers["kafka_dlt-exception-cause-fqcn"] == f"{__name__}.PaymentFailed".encode()


def test_root_cause_is_the_innermost_exception() -> None:
    innermost = KeyError("k")
    error = raised(RuntimeError("outer"), cause=raised(ValueError("middle"), cause=innermost))

    assert root_cause(error) is innermost
    headers = added(kafka_dead_letter_headers(kafka_message(), error, group_id="g", max_stacktrace=0), ())
    assert headers["kafka_dlt-exception-cause-fqcn"] == b"KeyError"


def test_root_cause_of_an_error_without_cause_is_itself() -> None:
    error = ValueError("alone")

    assert root_cause(error) is error


# stack traces -----------------------------------------------------------------------------------------


def test_stacktrace_below_the_limit_is_the_full_formatted_traceback() -> None:
    error = raised(PaymentFailed("declined"))
    full = "".join(traceback.format_exception(error))

    text = stacktrace(error, 1_000_000)

    assert text == full
    assert text.startswith("Traceback (most recent call last):")
    assert "PaymentFailed: declined" in text


def test_stacktrace_includes_the_cause() -> None:
    text = stacktrace(raised(RuntimeError("outer"), cause=KeyError("inner")), 1_000_000)

    assert "KeyError: 'inner'" in text
    assert "RuntimeError: outer" in text


@pytest.mark.parametrize("limit", [1, 10, 50, 200])
def test_stacktrace_is_truncated_to_the_byte_limit(limit: int) -> None:
    error = raised(ValueError("x" * 1000))
    full = "".join(traceback.format_exception(error)).encode()

    text = stacktrace(error, limit)

    assert text.encode() == full[:limit]


def test_truncation_inside_a_multibyte_character_gives_valid_utf8_within_the_limit() -> None:
    error = raised(ValueError("€" * 50))
    full = "".join(traceback.format_exception(error))
    first_euro = full.encode().index("€".encode())

    for cut_into_char in (1, 2):
        limit = first_euro + cut_into_char
        text = stacktrace(error, limit)
        encoded = text.encode("utf-8")
        assert len(encoded) <= limit
        assert full.startswith(text)
        assert len(encoded) == first_euro  # only the partial character is dropped


def test_kafka_stacktrace_header_respects_the_limit_with_multibyte_text() -> None:
    error = raised(PaymentFailed("Zahlung für € " * 40))

    for limit in range(1, 400, 7):
        headers = added(
            kafka_dead_letter_headers(kafka_message(), error, group_id="g", max_stacktrace=limit), ()
        )
        value = headers["kafka_dlt-exception-stacktrace"]
        assert len(value) <= limit
        value.decode("utf-8")  # raises if a character was cut in half


@pytest.mark.parametrize("limit", [0, -1])
def test_a_zero_limit_gives_an_empty_stacktrace(limit: int) -> None:
    error = raised(ValueError("x"))

    assert stacktrace(error, limit) == ""
    headers = added(kafka_dead_letter_headers(kafka_message(), error, group_id="g", max_stacktrace=limit), ())
    assert headers["kafka_dlt-exception-stacktrace"] == b""


# RabbitMQ ---------------------------------------------------------------------------------------------


def test_rabbit_headers_describe_the_error_and_the_original_route() -> None:
    error = raised(PaymentFailed("declined"))

    result = rabbit_dead_letter_headers(rabbit_message(), error, max_stacktrace=4096)
    headers = dict(result)

    assert set(headers) == RABBIT_DLQ_NAMES
    assert headers["x-exception-message"] == b"declined"
    assert headers["x-exception-fqcn"] == f"{__name__}.PaymentFailed".encode()
    assert headers["x-original-exchange"] == b"events"
    assert headers["x-original-routingKey"] == b"orders.created"
    assert headers["x-exception-stacktrace"].decode().startswith("Traceback")


def test_rabbit_retry_count_is_the_attempt_number() -> None:
    for attempt in (1, 3, 12):
        headers = dict(
            rabbit_dead_letter_headers(rabbit_message(attempt=attempt), ValueError(), max_stacktrace=0)
        )
        assert headers["retry-count"] == str(attempt).encode()


def test_rabbit_default_exchange_is_written_as_empty() -> None:
    message = rabbit_message(exchange=None, routing_key="work")

    headers = dict(rabbit_dead_letter_headers(message, ValueError(), max_stacktrace=0))

    assert headers["x-original-exchange"] == b""
    assert headers["x-original-routingKey"] == b"work"


def test_rabbit_headers_replace_existing_values_and_keep_other_headers_in_order() -> None:
    original: HeaderPairs = (
        ("x-exception-message", b"an older failure"),
        ("tenant", b"acme"),
        ("x-exception-stacktrace", b"old trace"),
        ("retry-count", b"1"),
        ("traceparent", b"00-abc-def-01"),
        ("x-original-exchange", b"older"),
    )

    result = rabbit_dead_letter_headers(rabbit_message(headers=original), ValueError("new"), max_stacktrace=0)

    names = [name for name, _ in result]
    assert names[:2] == ["tenant", "traceparent"]
    assert dict(result[:2]) == {"tenant": b"acme", "traceparent": b"00-abc-def-01"}
    for name in RABBIT_DLQ_NAMES:
        assert names.count(name) == 1, name
    headers = dict(result)
    assert headers["x-exception-message"] == b"new"
    assert headers["x-exception-stacktrace"] == b""
    assert headers["retry-count"] == b"3"
    assert headers["x-original-exchange"] == b"events"


def test_rabbit_stacktrace_is_truncated_to_valid_utf8() -> None:
    error = raised(ValueError("ü€" * 100))

    for limit in range(1, 300, 5):
        value = dict(rabbit_dead_letter_headers(rabbit_message(), error, max_stacktrace=limit))[
            "x-exception-stacktrace"
        ]
        assert len(value) <= limit
        value.decode("utf-8")


# naming -----------------------------------------------------------------------------------------------


def kafka_endpoint(**options: object) -> Endpoint:
    return Endpoint("billing", "kafka", ListenerOptions(topics=("orders", "refunds"), **options))  # type: ignore[arg-type]


def rabbit_endpoint(**options: object) -> Endpoint:
    return Endpoint("worker", "rabbit", ListenerOptions(queue="work", **options))  # type: ignore[arg-type]


def test_kafka_dead_letter_topic_defaults_to_the_source_topic_with_dlt_suffix() -> None:
    endpoint = kafka_endpoint()

    assert kafka_dead_letter_topic(endpoint, "orders") == "orders-dlt"
    assert kafka_dead_letter_topic(endpoint, "refunds") == "refunds-dlt"


def test_configured_kafka_dead_letter_destination_wins() -> None:
    endpoint = kafka_endpoint(dead_letter=DeadLetter(destination="all-failures"))

    assert kafka_dead_letter_topic(endpoint, "orders") == "all-failures"
    assert kafka_dead_letter_topic(endpoint, "refunds") == "all-failures"


def test_rabbit_dead_letter_queue_defaults_to_the_queue_with_dlq_suffix() -> None:
    assert rabbit_dead_letter_queue(rabbit_endpoint()) == "work.dlq"


def test_configured_rabbit_dead_letter_destination_wins() -> None:
    endpoint = rabbit_endpoint(dead_letter={"destination": "parking-lot"})

    assert rabbit_dead_letter_queue(endpoint) == "parking-lot"
