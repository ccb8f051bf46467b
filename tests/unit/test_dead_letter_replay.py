"""Replaying dead letters: the header rewrite, summaries, filters, times, targets, and the replay loop
on the embedded broker."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from listeners import Headers, Message
from listeners.deadletter.headers import kafka_dead_letter_headers, rabbit_dead_letter_headers
from listeners.deadletter.replay import (
    REPLAY_COUNT,
    REPLAYED_AT,
    ReplayError,
    ReplayTarget,
    parse_target,
    replay_count,
    replay_dead_letters,
    replay_envelope,
    replay_headers,
    replay_target,
)
from listeners.deadletter.store import StoredDeadLetter
from listeners.deadletter.summary import (
    DeadLetterFilter,
    exception_matches,
    format_time,
    list_dead_letters,
    parse_time,
    summarize,
)
from listeners.memory import MemoryBroker, MemoryKafkaTransport, MemoryRabbitTransport
from listeners.memory.amqp import AmqpMessage
from listeners.memory.dead_letters import MemoryKafkaDeadLetters, MemoryRabbitDeadLetters
from listeners.retry.kafka_wire import java_bigint

NOW_MS = 1_764_165_600_000


class PaymentDeclined(Exception):
    pass


RETRY_STATE = (
    ("retry_topic-attempts", (3).to_bytes(4, "big")),
    ("retry_topic-backoff-timestamp", java_bigint(NOW_MS)),
    ("retry_topic-original-timestamp", java_bigint(NOW_MS - 5000)),
    ("kafka_original-topic", b"orders"),
    ("kafka_original-partition", (1).to_bytes(4, "big")),
    ("kafka_exception-fqcn", b"ValueError"),
    ("retry-count", b"2"),
    ("x-original-exchange", b"shop"),
    ("x-original-routingKey", b"order.created"),
    ("listeners-retry-started", b"1764165000000"),
    ("x-death", b"[{'count': 1}]"),
    ("x-first-death-queue", b"mails.retry.1000"),
    ("x-last-death-reason", b"expired"),
)


def kafka_message(headers: tuple[tuple[str, bytes], ...] = ()) -> Message:
    return Message(
        body=b'{"id": 1}',
        headers=Headers(headers),
        destination="orders",
        listener_id="billing",
        transport="kafka",
        key=b"o-1",
        partition=2,
        offset=41,
        timestamp=NOW_MS / 1000,
    )


def kafka_letter(
    error: BaseException, headers: tuple[tuple[str, bytes], ...] = (), **fields: object
) -> StoredDeadLetter:
    pairs = kafka_dead_letter_headers(kafka_message(headers), error, group_id="billing", max_stacktrace=100)
    values: dict[str, object] = {"key": b"o-1", "partition": 0, "offset": 7, "timestamp": NOW_MS / 1000}
    values.update(fields)
    return StoredDeadLetter("orders-dlt", b'{"id": 1}', pairs, **values)  # type: ignore[arg-type]


def rabbit_letter(error: BaseException, attempt: int = 3) -> StoredDeadLetter:
    message = Message(
        body=b"hi",
        headers=Headers((("x-trace", b"t-1"),)),
        destination="mails",
        listener_id="mailer",
        transport="rabbit",
        exchange="shop",
        routing_key="mail.send",
        attempt=attempt,
    )
    pairs = rabbit_dead_letter_headers(message, error, max_stacktrace=100)
    return StoredDeadLetter("mails.dlq", b"hi", pairs, index=4, content_type="text/plain")


# the header rewrite ---------------------------------------------------------------------------------


def test_replay_drops_the_retry_state_keeps_the_rest_in_order_and_marks_the_replay() -> None:
    headers = (
        ("x-trace", b"abc"),
        *RETRY_STATE,
        ("kafka_dlt-exception-fqcn", b"x.Flaky"),
        ("b", b"\x00\xff"),
    )

    rewritten = replay_headers(headers, NOW_MS)

    assert rewritten == (
        ("x-trace", b"abc"),
        ("kafka_dlt-exception-fqcn", b"x.Flaky"),
        ("b", b"\x00\xff"),
        (REPLAY_COUNT, b"1"),
        (REPLAYED_AT, str(NOW_MS).encode()),
    )


def test_a_second_replay_counts_on_from_the_last_marker_and_keeps_one_of_each() -> None:
    once = replay_headers((("x-exception-fqcn", b"A"),), NOW_MS)
    again = replay_headers((*once, ("x-exception-fqcn", b"B")), NOW_MS + 1)

    assert again == (
        ("x-exception-fqcn", b"A"),
        ("x-exception-fqcn", b"B"),
        (REPLAY_COUNT, b"2"),
        (REPLAYED_AT, str(NOW_MS + 1).encode()),
    )


@pytest.mark.parametrize(("value", "count"), [(b"4", 4), (b" 7 ", 7), (b"x", 0), (b"-3", 0), (b"\xff", 0)])
def test_a_malformed_replay_count_counts_as_none(value: bytes, count: int) -> None:
    assert replay_count(((REPLAY_COUNT, value),)) == count


# summaries ----------------------------------------------------------------------------------------


def test_a_kafka_dead_letter_summarises_its_spring_headers() -> None:
    error = PaymentDeclined("card declined\nsecond line")
    letter = kafka_letter(error, (("retry_topic-attempts", (3).to_bytes(4, "big")),))

    summary = summarize(letter)

    assert summary.position == "orders-dlt[0]@7"
    assert summary.exception_fqcn == f"{__name__}.PaymentDeclined"
    assert summary.exception_name == "PaymentDeclined"
    assert summary.exception_message == "card declined"
    assert (summary.original_topic, summary.original_partition, summary.original_offset) == ("orders", 2, 41)
    assert summary.describe_original() == "orders[2]@41"
    assert summary.retry_count == 3
    assert (summary.key, summary.timestamp) == (b"o-1", NOW_MS / 1000)


def test_the_last_dead_letter_header_wins() -> None:
    letter = kafka_letter(ValueError("old"))
    again = StoredDeadLetter(
        "orders-dlt", b"", (*letter.headers, ("kafka_dlt-exception-fqcn", b"x.New")), partition=0, offset=1
    )

    assert summarize(again).exception_fqcn == "x.New"


def test_a_rabbit_dead_letter_summarises_its_spring_amqp_headers() -> None:
    summary = summarize(rabbit_letter(PaymentDeclined("no such mailbox"), attempt=4))

    assert summary.position == "mails.dlq#4"
    assert summary.exception_fqcn == f"{__name__}.PaymentDeclined"
    assert summary.exception_message == "no such mailbox"
    assert (summary.original_exchange, summary.original_routing_key) == ("shop", "mail.send")
    assert summary.describe_original() == "exchange 'shop' routing key 'mail.send'"
    assert summary.retry_count == 4
    assert summary.timestamp is None


def test_a_dead_letter_without_diagnostics_summarises_as_unknown() -> None:
    summary = summarize(StoredDeadLetter("x-dlt", b"", (), partition=0, offset=0))

    assert (summary.exception_fqcn, summary.exception_message, summary.retry_count) == (None, None, None)
    assert summary.describe_original() == "-"


# filters ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "fqcn", "expected"),
    [
        ("PaymentDeclined", "billing.errors.PaymentDeclined", True),
        ("errors.PaymentDeclined", "billing.errors.PaymentDeclined", True),
        ("billing.errors.PaymentDeclined", "billing.errors.PaymentDeclined", True),
        ("Declined", "billing.errors.PaymentDeclined", False),
        ("ValueError", "ValueError", True),
        ("ValueError", None, False),
        ("Error", "ValueError", False),
    ],
)
def test_exception_names_match_by_qualified_name_or_dotted_suffix(
    name: str, fqcn: str | None, expected: bool
) -> None:
    assert exception_matches(name, fqcn) is expected


def test_a_filter_needs_every_criterion_and_unknown_times_never_match_a_time_bound() -> None:
    summary = summarize(kafka_letter(PaymentDeclined("x")))
    at = NOW_MS / 1000

    assert DeadLetterFilter().matches(summary)
    assert DeadLetterFilter(exception="PaymentDeclined", key=b"o-1", since=at, until=at + 1).matches(summary)
    assert not DeadLetterFilter(exception="PaymentDeclined", key=b"o-2").matches(summary)
    assert not DeadLetterFilter(since=at + 0.001).matches(summary)
    assert not DeadLetterFilter(until=at).matches(summary)
    untimed = summarize(rabbit_letter(PaymentDeclined("x")))
    assert DeadLetterFilter(exception="PaymentDeclined").matches(untimed)
    assert not DeadLetterFilter(since=0.0).matches(untimed)


# times --------------------------------------------------------------------------------------------


def test_times_are_iso_8601_or_a_duration_ago() -> None:
    now = NOW_MS / 1000
    assert parse_time("2h", now) == now - 7200
    assert parse_time("90s", now) == now - 90
    assert parse_time("2025-11-26T14:00:00Z", now) == datetime(2025, 11, 26, 14, tzinfo=UTC).timestamp()
    assert parse_time("2025-11-26T15:00:00+01:00", now) == datetime(2025, 11, 26, 14, tzinfo=UTC).timestamp()
    naive = datetime(2025, 11, 26, 14).astimezone().timestamp()
    assert parse_time("2025-11-26T14:00:00", now) == naive
    with pytest.raises(ValueError, match="invalid time 'yesterday'"):
        parse_time("yesterday", now)


def test_times_print_as_utc_milliseconds() -> None:
    assert format_time(NOW_MS / 1000 + 0.0456) == "2025-11-26T14:00:00.045Z"
    assert format_time(None) == "-"


# targets ------------------------------------------------------------------------------------------


def test_the_target_is_the_original_destination_unless_given() -> None:
    kafka = summarize(kafka_letter(ValueError("x")))
    rabbit = summarize(rabbit_letter(ValueError("x")))

    assert replay_target("kafka", kafka, None) == ReplayTarget("orders", "", "kafka")
    assert replay_target("rabbit", rabbit, None) == ReplayTarget("shop", "mail.send", "rabbit")
    assert replay_target("kafka", kafka, parse_target("kafka", "orders-replay")) == ReplayTarget(
        "orders-replay"
    )
    assert parse_target("rabbit", "shop/mail.again") == ReplayTarget("shop", "mail.again", "rabbit")
    assert parse_target("rabbit", "mails") == ReplayTarget("", "mails", "rabbit")


def test_a_dead_letter_without_its_origin_needs_a_target() -> None:
    bare = summarize(StoredDeadLetter("x-dlt", b"", (), partition=0, offset=3))

    with pytest.raises(ReplayError, match=r"x-dlt\[0\]@3 has no kafka_dlt-original-topic header: .*--to"):
        replay_target("kafka", bare, None)


def test_the_replayed_envelope_keeps_body_key_and_content_type_and_lets_the_key_pick_the_partition() -> None:
    letter = kafka_letter(ValueError("x"), RETRY_STATE)

    envelope = replay_envelope(letter, ReplayTarget("orders"), NOW_MS)

    assert (envelope.destination, envelope.body, envelope.key, envelope.partition) == (
        "orders",
        b'{"id": 1}',
        b"o-1",
        None,
    )
    names = [name for name, _ in envelope.headers]
    assert "retry_topic-attempts" not in names
    assert "kafka_original-topic" not in names
    assert names[-2:] == [REPLAY_COUNT, REPLAYED_AT]
    assert "kafka_dlt-original-topic" in names
    rabbit = replay_envelope(
        rabbit_letter(ValueError("x")), ReplayTarget("shop", "mail.send", "rabbit"), NOW_MS
    )
    assert (rabbit.destination, rabbit.routing_key, rabbit.content_type) == (
        "shop",
        "mail.send",
        "text/plain",
    )


# the replay loop on the embedded broker -------------------------------------------------------------


async def test_kafka_replay_republishes_matching_dead_letters_and_leaves_them_in_place() -> None:
    broker = MemoryBroker(partitions=1)
    store = MemoryKafkaDeadLetters(MemoryKafkaTransport(broker))
    for error in (PaymentDeclined("a"), ValueError("b"), PaymentDeclined("c")):
        letter = kafka_letter(error, RETRY_STATE)
        broker.log.append("orders-dlt", letter.body, key=letter.key, headers=letter.headers)

    dry = await replay_dead_letters(
        store, "orders-dlt", matching=DeadLetterFilter("PaymentDeclined"), dry_run=True
    )
    assert (dry.total, dry.replayed, dry.unmatched) == (3, 2, 1)
    assert "orders" not in broker.log.topics()

    report = await replay_dead_letters(store, "orders-dlt", matching=DeadLetterFilter("PaymentDeclined"))

    assert (report.total, report.replayed, report.unmatched, report.targets) == (3, 2, 1, ["orders"])
    replayed = broker.log.records("orders")
    assert [dict(record.headers)[REPLAY_COUNT] for record in replayed] == [b"1", b"1"]
    assert all("retry_topic-attempts" not in dict(record.headers) for record in replayed)
    assert len(broker.log.records("orders-dlt")) == 3


async def test_rabbit_replay_removes_what_it_replayed_and_a_failed_publish_keeps_the_rest() -> None:
    broker = MemoryBroker()
    store = MemoryRabbitDeadLetters(MemoryRabbitTransport(broker))
    broker.amqp.declare_queue("mails.dlq")
    broker.amqp.declare_queue("mails")
    for error in (ValueError("a"), PaymentDeclined("b"), PaymentDeclined("c")):
        letter = rabbit_letter(error)
        broker.amqp.publish(AmqpMessage(letter.body, letter.headers, "", "mails.dlq", NOW_MS / 1000))

    limited = await replay_dead_letters(
        store,
        "mails.dlq",
        matching=DeadLetterFilter("PaymentDeclined"),
        to=parse_target("rabbit", "mails"),
        limit=1,
    )
    assert (limited.replayed, limited.unmatched, limited.limited) == (1, 1, True)
    assert len(broker.amqp.queues["mails"].messages) == 1
    listing = await list_dead_letters(store, "mails.dlq")
    assert [summary.exception_message for summary in listing.shown] == ["a", "c"]

    with pytest.raises(
        ReplayError, match=r"replaying mails\.dlq#0 to queue 'nowhere' .* stays in mails\.dlq"
    ):
        await replay_dead_letters(store, "mails.dlq", to=parse_target("rabbit", "nowhere"))
    assert len(broker.amqp.queues["mails.dlq"].messages) == 2
