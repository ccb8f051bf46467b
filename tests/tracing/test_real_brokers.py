"""The trace context crosses real brokers: Kafka to RabbitMQ through @send_to, one trace end to end."""

from __future__ import annotations

from typing import Any

import pytest
from dependency_injector import providers
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from listeners import kafka_listener, rabbit_listener, send_to
from listeners.testing import running
from tests.contract.configs import unique
from tests.support.apps import app_with
from tests.support.brokers import KafkaBroker
from tests.tracing.test_spans import named, parent_id

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
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    container = app_with(Handlers())
    container.tracer_provider.override(providers.Object(provider))
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
