"""Per-transport configuration of the contract suites: how to declare, publish and read dead letters.

A suite is written once against this interface; ``class TestX(SomeConfig, SomeSuite)`` runs it on
one transport. The Kafka and RabbitMQ transports add their own configs next to these.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

from listeners import Headers, Message, kafka_listener, rabbit_listener
from listeners.spec import TransportKind
from listeners.testing import TestApp


@dataclass(frozen=True)
class DeadLetterView:
    body: bytes
    headers: Headers
    key: bytes | None


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


class TransportConfig:
    """What a suite needs to know about a transport."""

    kind: ClassVar[TransportKind]
    has_keys: ClassVar[bool]
    overrides: ClassVar[dict[str, Any]] = {}

    def listener(self, source: str, **options: Any) -> Callable[[Any], Any]:
        raise NotImplementedError

    async def publish(
        self,
        app: TestApp,
        source: str,
        value: Any,
        *,
        key: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        raise NotImplementedError

    def dead_letters(self, app: TestApp, source: str) -> list[DeadLetterView]:
        raise NotImplementedError

    def check_location(self, message: Message, source: str) -> None:
        """Assert the transport-specific fields of a message consumed from ``source``."""
        raise NotImplementedError

    def check_dead_letter_headers(
        self, view: DeadLetterView, source: str, error: type[BaseException], text: str
    ) -> None:
        raise NotImplementedError


class MemoryKafkaConfig(TransportConfig):
    kind = "kafka"
    has_keys = True

    def listener(self, source: str, **options: Any) -> Callable[[Any], Any]:
        return kafka_listener(source, **options)

    async def publish(
        self,
        app: TestApp,
        source: str,
        value: Any,
        *,
        key: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        await app.kafka.send(source, value, key=key, headers=headers)

    def dead_letters(self, app: TestApp, source: str) -> list[DeadLetterView]:
        return [DeadLetterView(r.value, Headers(r.headers), r.key) for r in app.topic(f"{source}-dlt")]

    def check_location(self, message: Message, source: str) -> None:
        assert message.transport == "kafka"
        assert message.destination == source
        assert message.partition is not None
        assert message.offset is not None
        assert message.exchange is None
        assert message.routing_key is None

    def check_dead_letter_headers(
        self, view: DeadLetterView, source: str, error: type[BaseException], text: str
    ) -> None:
        headers = view.headers
        assert headers["kafka_dlt-original-topic"] == source.encode()
        assert len(headers["kafka_dlt-original-partition"]) == 4
        assert len(headers["kafka_dlt-original-offset"]) == 8
        assert headers["kafka_dlt-exception-fqcn"] == _fqcn(error).encode()
        assert text.encode() in headers["kafka_dlt-exception-message"]
        assert b"Traceback" in headers["kafka_dlt-exception-stacktrace"]


class MemoryRabbitConfig(TransportConfig):
    kind = "rabbit"
    has_keys = False

    def listener(self, source: str, **options: Any) -> Callable[[Any], Any]:
        return rabbit_listener(source, **options)

    async def publish(
        self,
        app: TestApp,
        source: str,
        value: Any,
        *,
        key: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        await app.rabbit.publish("", source, value, headers=headers)

    def dead_letters(self, app: TestApp, source: str) -> list[DeadLetterView]:
        return [DeadLetterView(m.body, Headers(m.headers), None) for m in app.queue(f"{source}.dlq")]

    def check_location(self, message: Message, source: str) -> None:
        assert message.transport == "rabbit"
        assert message.destination == source
        assert message.exchange == ""
        assert message.routing_key == source
        assert message.partition is None
        assert message.offset is None

    def check_dead_letter_headers(
        self, view: DeadLetterView, source: str, error: type[BaseException], text: str
    ) -> None:
        headers = view.headers
        assert headers["x-original-exchange"] == b""
        assert headers["x-original-routingKey"] == source.encode()
        assert headers["x-exception-fqcn"] == _fqcn(error).encode()
        assert text.encode() in headers["x-exception-message"]
        assert b"Traceback" in headers["x-exception-stacktrace"]


def _fqcn(error: type[BaseException]) -> str:
    return (
        error.__qualname__ if error.__module__ == "builtins" else f"{error.__module__}.{error.__qualname__}"
    )
