"""Message spans on the embedded broker: send and process spans, parentage across hops and retries."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from dependency_injector import providers
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from listeners import Message, Retry, kafka_listener, send_to
from listeners.testing import running
from tests.contract.configs import unique
from tests.support.apps import app_with

QUICK_RETRY = Retry.model_validate(
    {"attempts": 3, "backoff": {"delay": 0.01, "multiplier": 1.0, "jitter": 0}}
)


@pytest.fixture
def exporter() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    yield exporter
    exporter.clear()


def traced(handlers: Any, exporter: InMemorySpanExporter) -> Any:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    container = app_with(handlers)
    container.tracer_provider.override(providers.Object(provider))
    return container


def parent_id(span: ReadableSpan) -> int | None:
    return span.parent.span_id if span.parent is not None else None


def named(spans: tuple[ReadableSpan, ...], name: str) -> list[ReadableSpan]:
    return [span for span in spans if span.name == name]


async def test_send_process_and_a_forward_to_rabbitmq_form_one_trace(exporter: InMemorySpanExporter) -> None:
    orders, payments = unique("orders"), unique("payments")

    class Handlers:
        @kafka_listener(orders, id="billing")
        @send_to(payments)
        async def bill(self, order: dict[str, Any]) -> dict[str, Any]:
            return {"paid": order["id"]}

        @kafka_listener(payments, id="ledger")
        async def book(self, payment: dict[str, Any], message: Message) -> None:
            assert "traceparent" in message.headers

    async with running(traced(Handlers(), exporter)) as app:
        await app.kafka.send(orders, {"id": 1}, key="k-1")
        await app.wait_for(lambda: app.stats("ledger").processed == 1)
    spans = exporter.get_finished_spans()
    [sent] = named(spans, f"send {orders}")
    [billed] = named(spans, f"process {orders}")
    [forwarded] = named(spans, f"send {payments}")
    [booked] = named(spans, f"process {payments}")
    assert {span.context.trace_id for span in (sent, billed, forwarded, booked)} == {sent.context.trace_id}
    assert parent_id(billed) == sent.context.span_id
    assert parent_id(forwarded) == billed.context.span_id
    assert parent_id(booked) == forwarded.context.span_id
    assert (sent.kind, billed.kind) == (SpanKind.PRODUCER, SpanKind.CONSUMER)
    attributes = dict(billed.attributes or {})
    assert attributes["messaging.system"] == "kafka"
    assert attributes["messaging.operation.type"] == "process"
    assert attributes["messaging.destination.name"] == orders
    assert attributes["messaging.consumer.group.name"] == "billing"
    assert attributes["messaging.kafka.message.key"] == "k-1"
    assert "messaging.kafka.offset" in attributes
    assert "messaging.destination.partition.id" in attributes
    assert dict(sent.attributes or {})["messaging.operation.type"] == "send"


async def test_retries_and_the_dead_letter_stay_in_the_senders_trace(exporter: InMemorySpanExporter) -> None:
    source = unique("flaky")

    class Handlers:
        @kafka_listener(source, id="flaky", retry=QUICK_RETRY)
        async def handle(self, item: dict[str, Any]) -> None:
            raise ConnectionError("down")

    async with running(traced(Handlers(), exporter)) as app:
        await app.kafka.send(source, {"id": 2})
        await app.wait_for(lambda: app.stats("flaky").dead_lettered == 1)
        [dead] = app.topic(f"{source}-dlt")
    spans = exporter.get_finished_spans()
    [sent] = named(spans, f"send {source}")
    attempts = named(spans, f"process {source}")
    assert len(attempts) == 3
    for attempt in attempts:
        assert attempt.context.trace_id == sent.context.trace_id
        assert parent_id(attempt) == sent.context.span_id
        assert attempt.status.status_code is StatusCode.ERROR
        assert dict(attempt.attributes or {})["error.type"] == "ConnectionError"
    assert [dict(a.attributes or {})["messaging.message.attempt"] for a in attempts] == [1, 2, 3]
    traceparent = dict(dead.headers)["traceparent"].decode()
    assert traceparent.split("-")[1] == format(sent.context.trace_id, "032x"), "the dead letter continues it"


async def test_a_malformed_traceparent_starts_a_new_trace_and_the_message_is_handled(
    exporter: InMemorySpanExporter,
) -> None:
    source = unique("odd")

    class Handlers:
        handled = 0

        @kafka_listener(source, id="odd")
        async def handle(self, item: dict[str, Any]) -> None:
            type(self).handled += 1

    async with running(traced(Handlers(), exporter)) as app:
        app.broker.log.append(source, b'{"id": 3}', headers=(("traceparent", b"00-not-a-trace-01"),))
        await app.wait_for(lambda: Handlers.handled == 1)
    [processed] = named(exporter.get_finished_spans(), f"process {source}")
    assert processed.parent is None
    assert processed.status.status_code is StatusCode.UNSET


async def test_link_mode_starts_a_new_trace_linked_to_the_sender(exporter: InMemorySpanExporter) -> None:
    source = unique("linked")

    class Handlers:
        @kafka_listener(source, id="linked")
        async def handle(self, item: dict[str, Any]) -> None: ...

    container = traced(Handlers(), exporter)
    async with running(container, overrides={"listeners.tracing.link": True}) as app:
        await app.kafka.send(source, {"id": 4})
        await app.wait_for(lambda: app.stats("linked").processed == 1)
    spans = exporter.get_finished_spans()
    [sent] = named(spans, f"send {source}")
    [processed] = named(spans, f"process {source}")
    assert processed.parent is None
    assert processed.context.trace_id != sent.context.trace_id
    assert [link.context.span_id for link in processed.links] == [sent.context.span_id]


async def test_tracing_is_off_by_default_and_adds_no_headers() -> None:
    source = unique("plain")

    class Handlers:
        seen: list[Message] = []

        @kafka_listener(source, id="plain")
        async def handle(self, item: dict[str, Any], message: Message) -> None:
            self.seen.append(message)

    async with running(app_with(Handlers())) as app:
        assert app.container.message_tracing() is None
        await app.kafka.send(source, {"id": 5})
        await app.wait_for(lambda: len(Handlers.seen) == 1)
    assert "traceparent" not in Handlers.seen[0].headers


async def test_a_batch_span_links_to_every_records_context(exporter: InMemorySpanExporter) -> None:
    source = unique("batched")

    class Handlers:
        records = 0

        @kafka_listener(source, id="batched", batch=True)
        async def handle(self, items: list[dict[str, Any]]) -> None:
            type(self).records += len(items)

    async with running(traced(Handlers(), exporter)) as app:
        for n in range(5):
            await app.kafka.send(source, {"id": n}, key="same-partition")
        await app.wait_for(lambda: Handlers.records == 5)
    spans = exporter.get_finished_spans()
    sends = named(spans, f"send {source}")
    batches = named(spans, f"process {source}")
    assert len(sends) == 5
    assert batches
    linked = [link.context for batch in batches for link in batch.links]
    assert sorted(context.span_id for context in linked) == sorted(sent.context.span_id for sent in sends)
    assert {context.trace_id for context in linked} == {sent.context.trace_id for sent in sends}
    for batch in batches:
        assert batch.parent is None, "a batch starts its own trace, linked to its records'"
        assert batch.context.trace_id not in {sent.context.trace_id for sent in sends}
        assert dict(batch.attributes or {})["messaging.batch.message_count"] == len(batch.links)
