"""The trace-context filter, the text and JSON formats, and installing them on a logger's handlers."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from types import SimpleNamespace

import pytest
from opentelemetry.sdk.trace import TracerProvider

from listeners.logs import JsonFormatter, TextFormatter, TraceContextFilter, install_logging, message_fields
from listeners.message import Headers, Message


@pytest.fixture
def logger() -> Iterator[logging.Logger]:
    logger = logging.getLogger("tests.logs.formatting")
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    yield logger
    logger.handlers.clear()
    logger.propagate = True


def capture(logger: logging.Logger, formatter: logging.Formatter) -> io.StringIO:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    handler.addFilter(TraceContextFilter())
    logger.addHandler(handler)
    return stream


def kafka_message() -> Message:
    return Message(b"{}", Headers(), "orders", "billing", "kafka", partition=2, offset=15, attempt=3)


def test_a_line_inside_a_span_carries_its_trace_and_span_id(logger: logging.Logger) -> None:
    stream = capture(logger, JsonFormatter())
    tracer = TracerProvider().get_tracer("tests")
    with tracer.start_as_current_span("process orders") as span:
        logger.warning("inside")
    logger.warning("outside")
    inside, outside = (json.loads(line) for line in stream.getvalue().splitlines())
    assert inside["trace_id"] == format(span.get_span_context().trace_id, "032x")
    assert inside["span_id"] == format(span.get_span_context().span_id, "016x")
    assert "trace_id" not in outside
    assert "span_id" not in outside


def test_json_lines_hold_the_fields_and_keep_a_traceback_on_one_line(logger: logging.Logger) -> None:
    stream = capture(logger, JsonFormatter())
    try:
        raise ValueError("bad\nvalue")
    except ValueError:
        logger.exception("failed %s", "hard", extra=message_fields(kafka_message()))
    [line] = stream.getvalue().splitlines()
    entry = json.loads(line)
    assert entry["level"] == "ERROR"
    assert entry["logger"] == "tests.logs.formatting"
    assert entry["message"] == "failed hard"
    assert entry["time"].endswith("+00:00")
    fields = {name: entry[name] for name in ("listener_id", "destination", "partition", "offset", "attempt")}
    assert fields == {
        "listener_id": "billing",
        "destination": "orders",
        "partition": 2,
        "offset": 15,
        "attempt": 3,
    }
    assert "delivery_tag" not in entry
    assert "ValueError: bad\nvalue" in entry["exception"]


def test_text_lines_append_the_fields_that_are_set(logger: logging.Logger) -> None:
    stream = capture(logger, TextFormatter("%(levelname)s %(name)s: %(message)s"))
    logger.warning("retrying", extra=message_fields(kafka_message()))
    logger.warning("plain")
    retrying, plain = stream.getvalue().splitlines()
    assert retrying == (
        "WARNING tests.logs.formatting: retrying "
        "[listener_id=billing destination=orders partition=2 offset=15 attempt=3]"
    )
    assert plain == "WARNING tests.logs.formatting: plain"


def test_a_rabbitmq_message_names_its_delivery_tag() -> None:
    raw = SimpleNamespace(delivery_tag=42)
    message = Message(b"", Headers(), "mails", "mailer", "rabbit", raw=raw)
    fields = message_fields(message)
    assert fields["delivery_tag"] == 42
    assert "partition" not in fields
    assert "offset" not in fields


def test_install_sets_the_format_and_adds_the_filter_once() -> None:
    logger = logging.Logger("tests.logs.isolated", logging.INFO)  # not registered: no test run handlers
    stream = io.StringIO()
    logger.addHandler(logging.StreamHandler(stream))
    settings = SimpleNamespace(format="json", per_message=False)
    install_logging(settings, logger)
    install_logging(settings, logger)
    [handler] = logger.handlers
    assert isinstance(handler.formatter, JsonFormatter)
    assert sum(isinstance(f, TraceContextFilter) for f in handler.filters) == 1
    logger.info("hello")
    assert json.loads(stream.getvalue())["message"] == "hello"
    install_logging(SimpleNamespace(format="text"), logger)
    assert type(handler.formatter) is TextFormatter
