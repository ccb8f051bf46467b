"""The trace context crosses real brokers: Kafka to RabbitMQ through @send_to, one trace end to end."""

from __future__ import annotations

from typing import Any

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from listeners import kafka_listener, rabbit_listener, send_to
from listeners.testing import running
from tests.contract.configs import unique
from tests.support.brokers import KafkaBroker
from tests.tracing.test_spans import named, parent_id, traced

pytestmark = [pytest.mark.kafka, pytest.mark.rabbit]


async def test_a_kafka_to_rabbitmq_forward_continues_the_trace(kafka: KafkaBroker, rabbit: str) -> None:
    topic, queue = unique("tr-orders"), unique("tr-mails")

    class Handlers:
        @kafka_listener(topic, id="billing")
        @send_to(exchange="", routing_key=queue)
        async def bill(self, order: dict[str, Any]) -> dict[str, Any]:
            return {"mail": order["id"]}

        @rabbit_listener(queue, id="mailer")
        async def mail(self, mail: dict[str, Any]) -> None: ...

    exporter = InMemorySpanExporter()
    container = traced(Handlers(), exporter)
    overrides = kafka.overrides(**{"listeners.rabbit.url": rabbit})
    async with running(container, embedded=False, overrides=overrides) as app:
        await app.kafka.send(topic, {"id": 7})
        await app.wait_for(lambda: app.stats("mailer").processed == 1, timeout=30)
    spans = exporter.get_finished_spans()
    [sent] = named(spans, f"send {topic}")
    [billed] = named(spans, f"process {topic}")
    [forwarded] = named(spans, f"send {queue}")
    [mailed] = named(spans, f"process {queue}")
    assert parent_id(billed) == sent.context.span_id
    assert parent_id(forwarded) == billed.context.span_id
    assert parent_id(mailed) == forwarded.context.span_id
    assert mailed.context.trace_id == sent.context.trace_id
    attributes = dict(mailed.attributes or {})
    assert attributes["messaging.system"] == "rabbitmq"
    assert attributes["messaging.rabbitmq.destination.routing_key"] == queue


MALFORMED_TRACE_HEADERS: list[list[tuple[str, bytes]]] = [
    [("traceparent", b"00-not-a-trace-01")],
    [("traceparent", b"ff-" + b"1" * 32 + b"-" + b"2" * 16 + b"-01")],  # version ff is invalid
    [("traceparent", b"00-" + b"0" * 32 + b"-" + b"2" * 16 + b"-01")],  # an all-zero trace id
    [("traceparent", b"\xff\xfe\x00 not utf-8")],
    [("traceparent", b"00-" + b"1" * 32 + b"-" + b"2" * 16 + b"-01"), ("traceparent", b"garbage")],
    [("tracestate", b"\xff=\xfe"), ("baggage", b"\xff;;=")],
]
"""Headers a foreign or broken producer may send: each must start a new trace, never fail the message."""


def amqp_value(value: bytes) -> str | bytearray:
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        return bytearray(value)


def new_traces(exporter: InMemorySpanExporter, destination: str) -> list[Any]:
    return [
        span for span in named(exporter.get_finished_spans(), f"process {destination}") if span.parent is None
    ]


async def test_malformed_trace_headers_on_kafka_start_new_traces_and_every_record_is_handled(
    kafka: KafkaBroker,
) -> None:
    from aiokafka import AIOKafkaProducer

    topic = unique("tr-malformed")

    class Handlers:
        handled = 0

        @kafka_listener(topic, id="malformed-kafka")
        async def handle(self, item: dict[str, Any]) -> None:
            type(self).handled += 1

    exporter = InMemorySpanExporter()
    container = traced(Handlers(), exporter)
    producer = AIOKafkaProducer(bootstrap_servers=kafka.bootstrap, enable_idempotence=False)
    async with running(container, embedded=False, overrides=kafka.overrides()) as app:
        await producer.start()
        try:
            for number, headers in enumerate(MALFORMED_TRACE_HEADERS):
                await producer.send_and_wait(topic, b'{"id": %d}' % number, headers=headers)
        finally:
            await producer.stop()
        await app.wait_for(lambda: Handlers.handled == len(MALFORMED_TRACE_HEADERS), timeout=30)
        assert app.stats("malformed-kafka").dead_lettered == 0
    # The first valid traceparent in the fifth record is followed by a garbage one: the last value wins
    # (as Spring reads repeated headers), so it is a new trace as well.
    assert len(new_traces(exporter, topic)) == len(MALFORMED_TRACE_HEADERS)


async def test_malformed_trace_headers_on_rabbitmq_start_new_traces_and_every_message_is_handled(
    rabbit: str, cleanup: list[str]
) -> None:
    import aio_pika

    queue = unique("tr-malformed")
    cleanup.append(queue)

    class Handlers:
        handled = 0

        @rabbit_listener(queue, id="malformed-rabbit")
        async def handle(self, item: dict[str, Any]) -> None:
            type(self).handled += 1

    exporter = InMemorySpanExporter()
    container = traced(Handlers(), exporter)
    async with running(container, embedded=False, overrides={"listeners.rabbit.url": rabbit}) as app:
        connection = await aio_pika.connect(rabbit)
        try:
            channel = await connection.channel()
            for number, headers in enumerate(MALFORMED_TRACE_HEADERS):
                body = b'{"id": %d}' % number
                # AMQP tables hold one value per name: the last of a repeated header is what arrives.
                # Text as an AMQP string, other bytes as a byte array (pamqp encodes no plain bytes).
                table: dict[str, Any] = {name: amqp_value(value) for name, value in headers}
                await channel.default_exchange.publish(
                    aio_pika.Message(body, headers=table), routing_key=queue
                )
        finally:
            await connection.close()
        await app.wait_for(lambda: Handlers.handled == len(MALFORMED_TRACE_HEADERS), timeout=30)
        assert app.stats("malformed-rabbit").dead_lettered == 0
    assert len(new_traces(exporter, queue)) == len(MALFORMED_TRACE_HEADERS)
