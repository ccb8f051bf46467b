"""A message that fails, is retried through the broker (retry topics / delay-tier queues) and is then
dead-lettered reads as one trace on real Kafka and RabbitMQ: every attempt's process span in the
sender's trace with ``error.type``, and each republish (retry, dead letter) a ``send`` span under the
attempt that failed."""

from __future__ import annotations

import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from listeners import kafka_listener, rabbit_listener
from listeners.testing import running
from tests.contract.configs import unique
from tests.support.brokers import KafkaBroker
from tests.tracing.test_spans import exporter, named, parent_id, traced
from tests.transports.kafka.helpers import create_topic

__all__ = ["exporter"]


def non_blocking(attempts: int, delay: float) -> dict[str, object]:
    return {
        "attempts": attempts,
        "mode": "non-blocking",
        "backoff": {"delay": delay, "multiplier": 1.0, "jitter": 0},
    }


def of_kind(spans: tuple[ReadableSpan, ...], kind: SpanKind) -> list[ReadableSpan]:
    return sorted((span for span in spans if span.kind is kind), key=lambda span: span.start_time or 0)


def assert_one_trace_of_failed_attempts(
    spans: tuple[ReadableSpan, ...], sent: ReadableSpan, retry_sends: list[ReadableSpan], dead: ReadableSpan
) -> None:
    """Three failed attempts under the original send; retry sends under the first two, the dead letter
    under the last."""
    attempts = of_kind(spans, SpanKind.CONSUMER)
    assert len(attempts) == 3
    assert {span.context.trace_id for span in spans} == {sent.context.trace_id}, "one trace"
    for number, attempt in enumerate(attempts, start=1):
        attributes = dict(attempt.attributes or {})
        assert parent_id(attempt) == sent.context.span_id
        assert attempt.status.status_code is StatusCode.ERROR
        assert attributes["messaging.message.attempt"] == number
        assert "error.type" in attributes
    assert [parent_id(span) for span in retry_sends] == [attempt.context.span_id for attempt in attempts[:2]]
    assert parent_id(dead) == attempts[2].context.span_id
    for republish in (*retry_sends, dead):
        assert republish.kind is SpanKind.PRODUCER
        assert dict(republish.attributes or {})["messaging.operation.type"] == "send"


@pytest.mark.kafka
async def test_kafka_retry_topics_and_the_dead_letter_topic_are_one_trace(
    kafka: KafkaBroker, exporter: InMemorySpanExporter
) -> None:
    topic, group = unique("tr-nb"), unique("group")
    await create_topic(kafka, topic, 1)

    class Broken:
        @kafka_listener(topic, id="broken", group_id=group, retry=non_blocking(3, 0.1))
        async def handle(self, text: str) -> None:
            raise TimeoutError("still down")

    async with running(traced(Broken(), exporter), embedded=False, overrides=kafka.overrides()) as app:
        await app.kafka.send(topic, "pay", key="k-9")
        await app.wait_for(lambda: app.stats("broken").dead_lettered == 1, timeout=30)
    spans = exporter.get_finished_spans()
    [sent] = named(spans, f"send {topic}")
    retry_sends = sorted(named(spans, f"send {topic}-retry-100"), key=lambda span: span.start_time or 0)
    [dead] = named(spans, f"send {topic}-dlt")
    assert len(retry_sends) == 2
    assert_one_trace_of_failed_attempts(spans, sent, retry_sends, dead)
    attempts = of_kind(spans, SpanKind.CONSUMER)
    assert dict(attempts[0].attributes or {})["error.type"] == "TimeoutError"
    assert [span.name for span in attempts] == [f"process {topic}", *[f"process {topic}-retry-100"] * 2]
    assert dict(dead.attributes or {})["messaging.kafka.message.key"] == "k-9"


class Down(Exception):
    pass


@pytest.mark.rabbit
async def test_rabbitmq_delay_tiers_and_the_dead_letter_queue_are_one_trace(
    rabbit: str, exporter: InMemorySpanExporter, cleanup: list[str]
) -> None:
    queue = unique("tr-tiers")
    cleanup.append(f"{queue}.retry.100")

    class Broken:
        @rabbit_listener(queue, id="broken", retry=non_blocking(3, 0.1))
        async def handle(self, text: str) -> None:
            raise Down("still down")

    overrides = {"listeners.rabbit.url": rabbit}
    async with running(traced(Broken(), exporter), embedded=False, overrides=overrides) as app:
        await app.rabbit.publish("", queue, "mail")
        await app.wait_for(lambda: app.stats("broken").dead_lettered == 1, timeout=30)
    spans = exporter.get_finished_spans()
    [sent] = named(spans, f"send {queue}")
    retry_sends = sorted(named(spans, f"send {queue}.retry.100"), key=lambda span: span.start_time or 0)
    [dead] = named(spans, f"send {queue}.dlq")
    assert len(retry_sends) == 2
    assert_one_trace_of_failed_attempts(spans, sent, retry_sends, dead)
    attempts = of_kind(spans, SpanKind.CONSUMER)
    assert {span.name for span in attempts} == {f"process {queue}"}
    assert dict(attempts[0].attributes or {})["error.type"] == f"{__name__}.Down"
    assert dict(dead.attributes or {})["messaging.rabbitmq.destination.routing_key"] == f"{queue}.dlq"
