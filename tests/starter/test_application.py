"""The starter container and application lifespan: overrides that win, startup order, failures, logs."""

from __future__ import annotations

import logging
import socket
from collections.abc import AsyncIterator
from typing import Any

import pytest
from dependency_injector import providers

from listeners import (
    ConfigError,
    ManualClock,
    Message,
    Retry,
    StartupError,
    kafka_listener,
    rabbit_listener,
    send_to,
)
from listeners.memory import MemoryKafkaTransport
from listeners.outcome import Ack, Outcome
from listeners.runtime.pipeline import Handler
from listeners.testing import running
from listeners.transport.base import Envelope, PublishReceipt
from starter import ApplicationSettings, ListenersApplication, ListenersContainer, Section
from starter.loading import LaunchOptions


class Recorder:
    def __init__(self) -> None:
        self.seen: list[Any] = []

    @kafka_listener("app-orders", id="orders", retry=Retry(attempts=2, backoff={"delay": 3, "jitter": 0}))
    async def on_order(self, order: dict[str, Any], message: Message) -> None:
        self.seen.append((order, message.attempt))
        if order.get("fail") and message.attempt == 1:
            raise RuntimeError("first attempt fails")


class RecordingKafkaTransport(MemoryKafkaTransport):
    published: list[str] = []

    async def publish(self, envelope: Envelope) -> PublishReceipt:
        self.published.append(envelope.destination)
        return await super().publish(envelope)


def launch(**overrides: Any) -> providers.Object[LaunchOptions]:
    return providers.Object(LaunchOptions(config_dir=None, profiles=(), overrides=overrides, environ={}))


async def test_a_clock_declared_by_the_user_drives_retries() -> None:
    manual = ManualClock()

    class Container(ListenersContainer):
        clock = providers.Object(manual)
        recorder = providers.Singleton(Recorder)

    container = Container()
    async with running(container) as app:
        await app.kafka.send("app-orders", {"fail": True})
        await app.wait_for(lambda: manual.pending == 1)
        assert app.broker.clock is manual
        await manual.advance(3)
        await app.wait_for(lambda: container.recorder().seen == [({"fail": True}, 1), ({"fail": True}, 2)])


async def test_a_transport_declared_by_the_user_is_used_by_listeners_and_publishers() -> None:
    RecordingKafkaTransport.published = []

    class Container(ListenersContainer):
        kafka_transport = providers.Singleton(RecordingKafkaTransport, ListenersContainer.memory_broker)
        recorder = providers.Singleton(Recorder)
        publisher_user = providers.Singleton(lambda publisher: publisher, ListenersContainer.kafka_publisher)

    container = Container()
    async with running(container) as app:
        assert container.publisher_user() is app.kafka
        await app.kafka.send("app-orders", {"n": 1})
        await app.wait_for(lambda: len(container.recorder().seen) == 1)
    assert RecordingKafkaTransport.published == ["app-orders"]


class Tenancy(Section):
    label: str = "default"


class TenantSettings(ApplicationSettings):
    tenancy: Tenancy = Tenancy()


async def test_an_application_settings_section_is_loaded_and_injectable() -> None:
    class Container(ListenersContainer):
        settings_model = providers.Object(TenantSettings)
        tenant = providers.Callable(lambda name: name, ListenersContainer.settings.provided.tenancy.label)

    container = Container()
    async with running(container, overrides={"tenancy.label": "acme"}):
        assert container.tenant() == "acme"


class Skipper:
    """An interceptor: answers for messages marked skip, passes the rest on."""

    def __init__(self) -> None:
        self.seen = 0

    async def __call__(self, message: Message, call_next: Handler) -> Outcome:
        self.seen += 1
        if message.headers.get("skip"):
            return Ack(skipped="duplicate")
        return await call_next(message)


async def test_user_interceptors_wrap_every_handler_call() -> None:
    skipper = Skipper()

    class Container(ListenersContainer):
        interceptors = providers.List(providers.Object(skipper))
        recorder = providers.Singleton(Recorder)

    container = Container()
    async with running(container) as app:
        await app.kafka.send("app-orders", {"n": 1}, headers={"skip": "yes"})
        await app.kafka.send("app-orders", {"n": 2})
        await app.wait_for(lambda: skipper.seen == 2 and len(container.recorder().seen) == 1)
        assert app.stats("orders").duplicates_skipped == 1
    assert container.recorder().seen == [({"n": 2}, 1)]


async def test_send_to_crosses_from_kafka_to_rabbitmq() -> None:
    class Bridge:
        received: list[dict[str, Any]] = []

        @kafka_listener("bridge-in", id="bridge")
        @send_to(exchange="bridge-x", routing_key="item.created")
        async def forward(self, item: dict[str, Any]) -> dict[str, Any]:
            return {**item, "forwarded": True}

        @rabbit_listener("bridge-q", id="bridge_sink", exchange="bridge-x", routing_key="item.*")
        async def receive(self, item: dict[str, Any], message: Message) -> None:
            self.received.append({**item, "routing_key": message.routing_key})

    class Container(ListenersContainer):
        bridge = providers.Singleton(Bridge)

    async with running(Container()) as app:
        await app.kafka.send("bridge-in", {"id": 1})
        await app.wait_for(lambda: len(Bridge.received) == 1)
    assert Bridge.received == [{"id": 1, "forwarded": True, "routing_key": "item.created"}]


async def test_auto_startup_false_creates_the_listener_without_consuming() -> None:
    class Paused:
        seen: list[int] = []

        @kafka_listener("paused", id="paused", auto_startup=False)
        async def handle(self, number: int) -> None:
            self.seen.append(number)

    class Container(ListenersContainer):
        paused = providers.Singleton(Paused)

    async with running(Container()) as app:
        await app.kafka.send("paused", 1)
        assert app.app.listener("paused").state == "created"
        await app.app.listener("paused").start()
        await app.wait_for(lambda: Paused.seen == [1])


async def test_invalid_config_stops_startup_before_anything_is_created() -> None:
    class Container(ListenersContainer):
        recorder = providers.Singleton(Recorder)

    container = Container()
    container.launch.override(launch(**{"listeners.listener.orders.concurrency": 0}))
    app = ListenersApplication(container)
    with pytest.raises(ConfigError, match=r"override listeners\.listener\.orders\.concurrency"):
        await app.start()
    assert app.listeners == {}


async def test_config_for_an_unknown_listener_id_is_an_error_naming_the_known_ids() -> None:
    class Container(ListenersContainer):
        recorder = providers.Singleton(Recorder)

    container = Container()
    container.launch.override(launch(**{"listeners.listener.ordres.concurrency": 2}))
    with pytest.raises(ConfigError, match=r"no listener has id 'ordres' \(known: orders\)"):
        await ListenersApplication(container).start()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def test_an_unreachable_broker_fails_startup_before_user_resources_start() -> None:
    events: list[str] = []

    async def resource() -> AsyncIterator[None]:
        events.append("resource started")
        yield None

    class Container(ListenersContainer):
        recorder = providers.Singleton(Recorder)
        background = providers.Resource(resource)

    container = Container()
    address = f"127.0.0.1:{free_port()}"
    container.launch.override(launch(**{"listeners.kafka.bootstrap_servers": address}))
    with pytest.raises(
        StartupError, match=f"cannot start the kafka transport: connecting to Kafka at {address}"
    ):
        await ListenersApplication(container).start()
    assert events == []


async def test_resources_started_before_a_startup_failure_are_shut_down_again() -> None:
    events: list[str] = []

    async def resource() -> AsyncIterator[None]:
        events.append("resource started")
        yield None
        events.append("resource stopped")

    class BrokenRecorder(Recorder):
        def __init__(self) -> None:
            raise RuntimeError("cannot build the listener object")

    class Container(ListenersContainer):
        recorder = providers.Singleton(BrokenRecorder)
        background = providers.Resource(resource)

    container = Container()
    container.launch.override(launch())
    with pytest.raises(RuntimeError, match="cannot build the listener object"):
        await ListenersApplication(container).start()
    assert events == ["resource started", "resource stopped"]


async def test_listener_methods_without_a_provider_are_reported() -> None:
    from tests.starter.apps import orphan

    class Container(ListenersContainer):
        wiring_config = orphan.WIRING

    with pytest.raises(
        StartupError, match=r"class tests\.starter\.apps\.orphan\.Orphan declares listener methods"
    ):
        await ListenersApplication(Container()).start()


async def test_startup_and_shutdown_are_logged_per_listener(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class Declared:
        @kafka_listener("logged", id="logged", idempotency_key="id", retry={"mode": "non-blocking"})
        async def handle(self, item: dict[str, Any]) -> None: ...

    class Container(ListenersContainer):
        declared = providers.Singleton(Declared)

    caplog.set_level(logging.INFO, logger="listeners")
    async with running(Container()) as app:
        await app.kafka.send("logged", {"id": 1})
        await app.wait_for(lambda: app.stats("logged").processed == 1)
    messages = [record.getMessage() for record in caplog.records]
    assert any(
        m.startswith("listener logged started: transport=kafka topics=logged group=logged") for m in messages
    )
    assert "not honoured" not in "\n".join(messages), "idempotency keys are honoured"
    assert any(m.startswith("listener logged stopped: processed=1 failed=0") for m in messages)


async def test_topology_of_every_listener_exists_before_any_listener_consumes() -> None:
    """A forward to an exchange that a later-starting listener binds must not fail on the first message."""

    class Pipeline:
        received: list[str] = []

        @kafka_listener("topology-in", id="a_forwarder")
        @send_to(exchange="topology-x", routing_key="item")
        async def forward(self, item: str) -> str:
            return item

        @rabbit_listener(
            "topology-q", id="z_sink", exchange="topology-x", routing_key="item", auto_startup=False
        )
        async def receive(self, item: str) -> None:
            self.received.append(item)

    async def publish_before_listeners_start(publisher: Any) -> AsyncIterator[None]:
        await publisher.send("topology-in", "early")
        yield None

    class Container(ListenersContainer):
        pipeline = providers.Singleton(Pipeline)
        early = providers.Resource(publish_before_listeners_start, ListenersContainer.kafka_publisher)

    async with running(Container()) as app:
        # The sink is not even started: its queue and binding were declared with everyone else's.
        await app.wait_for(lambda: app.stats("a_forwarder").processed == 1)
        assert app.stats("a_forwarder").failed == 0
        await app.app.listener("z_sink").start()
        await app.wait_for(lambda: Pipeline.received == ["early"])


@pytest.mark.parametrize("freeze", [True, False])
async def test_a_started_app_freezes_its_heap_for_the_collector_and_unfreezes_it_on_stop(
    freeze: bool,
) -> None:
    import gc

    assert gc.get_freeze_count() == 0
    async with running(ListenersContainer(), overrides={"listeners.gc_freeze": freeze}) as app:
        assert app.app.settings.listeners.gc_freeze is freeze
        assert (gc.get_freeze_count() > 0) is freeze, "startup objects moved out of the collector's sight"
    assert gc.get_freeze_count() == 0, "unfrozen on stop: what the app held may be collected again"
