"""Log lines of a running application: failure lines carry the message's fields and its trace id, a
handler's own lines inside the process span carry the trace id, and the per-message line is off by
default and on through the MessageLog step."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest
from dependency_injector import providers
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from listeners import Retry, kafka_listener
from listeners.logs import MessageLog, TraceContextFilter
from listeners.testing import running
from tests.contract.configs import unique
from tests.support.apps import app_with
from tests.tracing.test_spans import exporter, named, traced

__all__ = ["exporter"]

QUICK_RETRY = Retry.model_validate(
    {"attempts": 2, "backoff": {"delay": 0.01, "multiplier": 1.0, "jitter": 0}}
)


class Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []
        self.addFilter(TraceContextFilter())

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def of(self, logger: str) -> list[logging.LogRecord]:
        return [record for record in self.records if record.name == logger]


@pytest.fixture
def records() -> Iterator[Records]:
    handler = Records()
    root = logging.getLogger()
    messages = logging.getLogger("listeners.messages")
    level, messages_level = root.level, messages.level
    root.addHandler(handler)
    messages.setLevel(logging.INFO)
    yield handler
    root.removeHandler(handler)
    messages.setLevel(messages_level)
    root.setLevel(level)


def trace_id_of(span: Any) -> str:
    return format(span.context.trace_id, "032x")


async def test_failure_lines_carry_the_message_fields_and_the_failed_attempts_trace(
    records: Records, exporter: InMemorySpanExporter
) -> None:
    source = unique("logged")

    class Handlers:
        @kafka_listener(source, id="logged", retry=QUICK_RETRY)
        async def handle(self, item: dict[str, Any]) -> None:
            logging.getLogger("tests.logs.handler").warning("working on %s", item["id"])
            raise ConnectionError("down")

    async with running(traced(Handlers(), exporter)) as app:
        await app.kafka.send(source, {"id": 1})
        await app.wait_for(lambda: app.stats("logged").dead_lettered == 1)
    attempts = named(exporter.get_finished_spans(), f"process {source}")
    assert len(attempts) == 2
    [retrying] = [record for record in records.of("listeners.retry") if record.levelno == logging.WARNING]
    [dead] = [record for record in records.of("listeners.retry") if record.levelno == logging.ERROR]
    for line, attempt in ((retrying, attempts[0]), (dead, attempts[1])):
        fields = line.__dict__
        assert (fields["listener_id"], fields["destination"]) == ("logged", source)
        assert fields["partition"] is not None
        assert fields["offset"] is not None
        assert fields["trace_id"] == trace_id_of(attempt)
        assert fields["span_id"] == format(attempt.context.span_id, "016x")
    assert (retrying.__dict__["attempt"], dead.__dict__["attempt"]) == (1, 2)
    handler_lines = records.of("tests.logs.handler")
    assert [line.__dict__["span_id"] for line in handler_lines] == [
        format(attempt.context.span_id, "016x") for attempt in attempts
    ], "a handler's own lines name the process span they ran in"


async def test_no_per_message_line_by_default(records: Records) -> None:
    source = unique("quiet")

    class Handlers:
        @kafka_listener(source, id="quiet")
        async def handle(self, item: dict[str, Any]) -> None: ...

    async with running(app_with(Handlers())) as app:
        await app.kafka.send(source, {"id": 2})
        await app.wait_for(lambda: app.stats("quiet").processed == 1)
    assert records.of("listeners.messages") == []


async def test_the_message_log_step_writes_one_line_per_handled_message(
    records: Records, exporter: InMemorySpanExporter
) -> None:
    source = unique("chatty")

    class Handlers:
        @kafka_listener(source, id="chatty")
        async def handle(self, item: dict[str, Any]) -> None: ...

    container = traced(Handlers(), exporter)
    container.interceptors.add_args(providers.Object(MessageLog()))
    async with running(container) as app:
        for n in range(3):
            await app.kafka.send(source, {"id": n})
        await app.wait_for(lambda: app.stats("chatty").processed == 3)
    lines = records.of("listeners.messages")
    assert len(lines) == 3
    assert all(line.levelno == logging.INFO for line in lines)
    assert all(f"listener chatty: {source}[" in line.getMessage() for line in lines)
    assert all(" (attempt 1) Ack in " in line.getMessage() for line in lines)
    processed = {trace_id_of(span) for span in named(exporter.get_finished_spans(), f"process {source}")}
    assert {line.__dict__["trace_id"] for line in lines} == processed
