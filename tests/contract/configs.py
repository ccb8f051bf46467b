"""Per-transport configuration of the contract suites: how to run an app, publish, read dead letters.

A suite is written once against this interface; ``class TestX(SomeConfig, SomeSuite)`` runs it on
one transport. Every app a test runs goes to the same broker (one embedded broker per test, or the
run's real broker), so a test can stop an app and start another to see what was committed.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from typing import Any, ClassVar

import pytest
from dependency_injector import providers

from listeners import Clock, Headers, Message, kafka_listener, rabbit_listener
from listeners.exceptions import PublishError
from listeners.memory import MemoryBroker
from listeners.rabbit.amqp import header_pairs_from_table
from listeners.spec import TransportKind
from listeners.testing import TestApp, running
from listeners.transport.base import Envelope
from tests.support.apps import app_with
from tests.support.brokers import KafkaBroker
from tests.support.kafka_tools import read_topic
from tests.support.rabbit_tools import take_all


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

    def overrides(self) -> dict[str, Any]:
        return {}

    def single_partition(self) -> dict[str, Any]:
        """Overrides under which new topics get one partition."""
        return {}

    def prepare(self, container: Any, clock: Clock | None) -> None:
        """Point a test's container at the shared broker."""

    @asynccontextmanager
    async def run(
        self,
        *handlers: Any,
        overrides: dict[str, Any] | None = None,
        clock: Clock | None = None,
        idempotency_store: Any = None,
    ) -> AsyncIterator[TestApp]:
        container = app_with(*handlers)
        self.prepare(container, clock)
        if idempotency_store is not None:
            container.idempotency_store.override(providers.Object(idempotency_store))
        async with running(
            container, overrides={**self.overrides(), **(overrides or {})}, clock=clock
        ) as app:
            yield app

    @contextmanager
    def refusing_publishes(self, app: TestApp, *, except_to: str) -> Iterator[list[str]]:
        """Until the block ends, every publish of the app's transport fails as a broker refusing it
        would (the settlers' retry and dead-letter publishes included), except those to the topic or
        routing key ``except_to``; yields the refused destinations."""
        transport = app.container.transports().get(self.kind)
        refused: list[str] = []

        def check(envelopes: list[Envelope]) -> None:
            targets = [envelope.routing_key or envelope.destination for envelope in envelopes]
            if any(target != except_to for target in targets):
                refused.extend(targets)
                raise PublishError(f"refused by the test: {targets[0]}")

        def refusing(name: str) -> Any:
            original = getattr(transport, name)

            async def refused_first(envelopes: Any, *args: Any) -> Any:
                check(envelopes if isinstance(envelopes, list) else [envelopes])
                return await original(envelopes, *args)

            return refused_first

        def no_tiers(endpoint: Any, tier: int) -> str:  # the embedded RabbitMQ's retry path
            refused.append(f"{endpoint.options.queue}.retry.{tier}")
            raise PublishError("refused by the test: a retry tier")

        publishing = ("publish", "publish_many", "republish")
        shadowed = {name: refusing(name) for name in publishing if hasattr(transport, name)}
        if hasattr(transport, "declare_retry_queue"):
            shadowed["declare_retry_queue"] = no_tiers
        for name, method in shadowed.items():
            setattr(transport, name, method)  # instance attributes shadow the methods
        try:
            yield refused
        finally:
            for name in shadowed:
                delattr(transport, name)

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

    async def dead_letters(self, app: TestApp, source: str) -> list[DeadLetterView]:
        raise NotImplementedError

    async def wait_dead_letters(
        self, app: TestApp, source: str, count: int, timeout: float = 10
    ) -> list[DeadLetterView]:
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            found = await self.dead_letters(app, source)
            if len(found) >= count or asyncio.get_running_loop().time() > deadline:
                assert len(found) == count, (
                    f"expected {count} dead letter(s) for {source}, found {len(found)}"
                )
                return found
            await asyncio.sleep(0.02)

    def check_location(self, message: Message, source: str) -> None:
        """Assert the transport-specific fields of a message consumed from ``source``."""
        raise NotImplementedError

    def check_dead_letter_headers(
        self,
        view: DeadLetterView,
        source: str,
        error: type[BaseException],
        text: str,
        *,
        first: Message | None = None,
        attempts: int | None = None,
    ) -> None:
        """Assert the dead letter's diagnostic headers; with ``first`` (the message's first delivery as
        its handler saw it) and ``attempts`` made, every one exactly, in order, byte for byte."""
        raise NotImplementedError


class _Embedded(TransportConfig):
    """One embedded broker per test, shared by every app the test runs."""

    _broker: MemoryBroker | None = None

    @pytest.fixture(autouse=True)
    def _fresh_broker(self) -> None:
        self._broker = None

    def single_partition(self) -> dict[str, Any]:
        return {"listeners.memory.partitions": 1}

    def prepare(self, container: Any, clock: Clock | None) -> None:
        if self._broker is None:
            self._broker = MemoryBroker(clock)
        container.memory_broker.override(providers.Object(self._broker))


class _KafkaChecks(TransportConfig):
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

    def check_location(self, message: Message, source: str) -> None:
        assert message.transport == "kafka"
        assert message.destination == source
        assert message.partition is not None
        assert message.offset is not None
        assert message.exchange is None
        assert message.routing_key is None

    def check_dead_letter_headers(
        self,
        view: DeadLetterView,
        source: str,
        error: type[BaseException],
        text: str,
        *,
        first: Message | None = None,
        attempts: int | None = None,
    ) -> None:
        headers = view.headers
        assert headers["kafka_dlt-original-topic"] == source.encode()
        assert len(headers["kafka_dlt-original-partition"]) == 4
        assert len(headers["kafka_dlt-original-offset"]) == 8
        assert headers["kafka_dlt-exception-fqcn"] == _fqcn(error).encode()
        assert text.encode() in headers["kafka_dlt-exception-message"]
        assert b"Traceback" in headers["kafka_dlt-exception-stacktrace"]
        if first is None:
            return
        assert first.partition is not None
        assert first.offset is not None
        assert first.timestamp is not None
        dlt = [(name, value) for name, value in view.headers.pairs if name.startswith("kafka_dlt-")]
        stacktrace = headers["kafka_dlt-exception-stacktrace"]
        assert stacktrace.startswith(b"Traceback (most recent call last):")
        assert stacktrace.rstrip().endswith(f"{_fqcn(error)}: {text}".encode())
        expected = [  # Spring's DeadLetterPublishingRecoverer names, order and encodings
            ("kafka_dlt-original-topic", source.encode()),
            ("kafka_dlt-original-partition", first.partition.to_bytes(4, "big")),
            ("kafka_dlt-original-offset", first.offset.to_bytes(8, "big")),
            ("kafka_dlt-original-timestamp", int(first.timestamp * 1000).to_bytes(8, "big")),
            ("kafka_dlt-original-timestamp-type", b"CreateTime"),
            ("kafka_dlt-original-consumer-group", (first.group_id or "").encode()),
            ("kafka_dlt-exception-fqcn", _fqcn(error).encode()),
            ("kafka_dlt-exception-message", text.encode()),
            ("kafka_dlt-exception-stacktrace", stacktrace),
        ]
        assert dlt == expected, f"{dlt} != {expected}"


class MemoryKafkaConfig(_Embedded, _KafkaChecks):
    async def dead_letters(self, app: TestApp, source: str) -> list[DeadLetterView]:
        return [DeadLetterView(r.value, Headers(r.headers), r.key) for r in app.topic(f"{source}-dlt")]


class KafkaConfig(_KafkaChecks):
    """The real Kafka transport, on the run's Kafka-protocol broker."""

    broker: KafkaBroker

    @pytest.fixture(autouse=True)
    def _broker(self, kafka: KafkaBroker) -> None:
        self.broker = kafka

    def overrides(self) -> dict[str, Any]:
        return self.broker.overrides()

    def single_partition(self) -> dict[str, Any]:
        return {"listeners.kafka.provisioning.partitions": 1}

    async def dead_letters(self, app: TestApp, source: str) -> list[DeadLetterView]:
        records = await read_topic(self.broker.bootstrap, f"{source}-dlt")
        return [DeadLetterView(r.value or b"", Headers(tuple(r.headers)), r.key) for r in records]


class _RabbitChecks(TransportConfig):
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

    def check_location(self, message: Message, source: str) -> None:
        assert message.transport == "rabbit"
        assert message.destination == source
        assert message.exchange == ""
        assert message.routing_key == source
        assert message.partition is None
        assert message.offset is None

    def check_dead_letter_headers(
        self,
        view: DeadLetterView,
        source: str,
        error: type[BaseException],
        text: str,
        *,
        first: Message | None = None,
        attempts: int | None = None,
    ) -> None:
        headers = view.headers
        assert headers["x-original-exchange"] == b""
        assert headers["x-original-routingKey"] == source.encode()
        assert headers["x-exception-fqcn"] == _fqcn(error).encode()
        assert text.encode() in headers["x-exception-message"]
        assert b"Traceback" in headers["x-exception-stacktrace"]
        if first is None:
            return
        stacktrace = headers["x-exception-stacktrace"]
        assert stacktrace.startswith(b"Traceback (most recent call last):")
        assert stacktrace.rstrip().endswith(f"{_fqcn(error)}: {text}".encode())
        written = {name: value for name, value in view.headers.pairs if name in _SPRING_AMQP_HEADERS}
        expected = {  # Spring AMQP's RepublishMessageRecoverer names, plus the attempts made
            "x-exception-message": text.encode(),
            "x-exception-stacktrace": stacktrace,
            "x-exception-fqcn": _fqcn(error).encode(),
            "x-original-exchange": (first.exchange or "").encode(),
            "x-original-routingKey": (first.routing_key or "").encode(),
            "retry-count": str(attempts).encode(),
        }
        assert written == expected, f"{written} != {expected}"
        assert not any(name.startswith("x-death") for name, _ in view.headers.pairs)


class MemoryRabbitConfig(_Embedded, _RabbitChecks):
    async def dead_letters(self, app: TestApp, source: str) -> list[DeadLetterView]:
        return [DeadLetterView(m.body, Headers(m.headers), None) for m in app.queue(f"{source}.dlq")]


class RabbitMQConfig(_RabbitChecks):
    """The real RabbitMQ transport, on the local broker (or LISTENERS_TEST_RABBIT_URL)."""

    url: str
    _taken: dict[str, list[DeadLetterView]]

    @pytest.fixture(autouse=True)
    def _broker(self, rabbit: str) -> None:
        self.url = rabbit
        self._taken = {}

    def overrides(self) -> dict[str, Any]:
        return {"listeners.rabbit.url": self.url}

    async def dead_letters(self, app: TestApp, source: str) -> list[DeadLetterView]:
        taken = self._taken.setdefault(source, [])
        for message in await take_all(self.url, f"{source}.dlq"):
            taken.append(
                DeadLetterView(message.body, Headers(header_pairs_from_table(message.headers)), None)
            )
        return list(taken)


_SPRING_AMQP_HEADERS = frozenset(
    {
        "x-exception-message", "x-exception-stacktrace", "x-exception-fqcn", "x-original-exchange",
        "x-original-routingKey", "retry-count",
    }
)  # fmt: skip


def _fqcn(error: type[BaseException]) -> str:
    return (
        error.__qualname__ if error.__module__ == "builtins" else f"{error.__module__}.{error.__qualname__}"
    )
