"""ListenersContainer: the auto-configured container applications subclass.

It provides settings, the clock, the codec, the embedded broker, one transport per kind, publishers,
the handler thread pool, and the places where interceptors, idempotency stores and tracing plug in.
A provider the subclass declares under the same name replaces the starter's everywhere it is used,
including inside the starter's other providers (as Spring Boot backs off when a user bean exists).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

from dependency_injector import containers, providers

from listeners.clock import SystemClock
from listeners.codec import JsonCodec
from listeners.memory import MemoryBroker, MemoryKafkaTransport, MemoryRabbitTransport
from listeners.metrics.setup import create_message_metrics, create_meter_provider
from listeners.publishing import KafkaPublisher, RabbitPublisher
from listeners.tracing.setup import create_message_tracing, create_tracer_provider
from listeners.transport.base import Transport
from listeners.transport.registry import TransportRegistry, load_transport_class
from starter.loading import LaunchOptions, LoadedSettings, load_settings
from starter.settings import ApplicationSettings

HANDLER_THREAD_PREFIX = "listeners-handler"
"""Name prefix of the threads that run sync handlers."""


def _settings_of(loaded: LoadedSettings[ApplicationSettings]) -> ApplicationSettings:
    return loaded.settings


def create_kafka_transport(settings: ApplicationSettings, broker: MemoryBroker) -> Transport:
    """The embedded broker for ``memory://``, else the aiokafka transport."""
    kafka = settings.listeners.kafka
    if kafka.embedded:
        return MemoryKafkaTransport(broker, revoke_timeout=kafka.revoke_timeout)
    return load_transport_class("kafka", "aiokafka")(kafka)


def create_rabbit_transport(settings: ApplicationSettings, broker: MemoryBroker) -> Transport:
    """The embedded broker for ``memory://``, else the aio-pika transport."""
    rabbit = settings.listeners.rabbit
    if rabbit.embedded:
        return MemoryRabbitTransport(broker)
    return load_transport_class("rabbit", "aio-pika")(rabbit)


class ListenersContainer(containers.DeclarativeContainer):
    """Subclass this, add your providers and a ``wiring_config`` naming your handler modules.

    Replaceable providers (declare one with the same name to replace it): ``launch``,
    ``settings_model``, ``clock``, ``codec``, ``memory_broker``, ``kafka_transport``,
    ``rabbit_transport``, ``kafka_publisher``, ``rabbit_publisher``, ``executor``, ``interceptors``.
    ``idempotency_store``: a store (any :class:`~listeners.idempotency.store.IdempotencyStore`) that
    serves every listener with an ``idempotency_key`` instead of the configured ones.
    ``tracer_provider``: the OpenTelemetry TracerProvider of message spans (by default built from
    ``listeners.tracing``, None when disabled); provide your own to trace with it.
    ``meter_provider``: the OpenTelemetry MeterProvider of message and listener metrics (by default
    built from ``listeners.metrics``, None when disabled); provide your own to record into it.
    """

    launch = providers.Object(LaunchOptions())
    settings_model = providers.Object(ApplicationSettings)
    loaded_settings = providers.Singleton(load_settings, settings_model, launch)
    settings = providers.Singleton(_settings_of, loaded_settings)

    clock = providers.Singleton(SystemClock)
    codec = providers.Singleton(JsonCodec)
    memory_broker = providers.Singleton(
        MemoryBroker, clock, partitions=settings.provided.listeners.memory.partitions
    )
    kafka_transport = providers.Singleton(create_kafka_transport, settings, memory_broker)
    rabbit_transport = providers.Singleton(create_rabbit_transport, settings, memory_broker)
    transports = providers.Singleton(
        TransportRegistry, kafka=kafka_transport.provider, rabbit=rabbit_transport.provider
    )
    tracer_provider: providers.Provider[Any] = providers.Singleton(
        create_tracer_provider, settings.provided.listeners.tracing
    )
    message_tracing = providers.Singleton(
        create_message_tracing, tracer_provider, settings.provided.listeners.tracing
    )
    meter_provider: providers.Provider[Any] = providers.Singleton(
        create_meter_provider, settings.provided.listeners.metrics, settings.provided.listeners.server
    )
    message_metrics = providers.Singleton(create_message_metrics, meter_provider)
    kafka_publisher = providers.Singleton(KafkaPublisher, transports, codec, message_tracing, message_metrics)
    rabbit_publisher = providers.Singleton(
        RabbitPublisher, transports, codec, message_tracing, message_metrics
    )
    executor = providers.Singleton(
        ThreadPoolExecutor,
        max_workers=settings.provided.listeners.executor.max_workers,
        thread_name_prefix=HANDLER_THREAD_PREFIX,
    )
    interceptors = providers.List()
    idempotency_store: providers.Provider[Any] = providers.Object(None)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        _rebind_overridden_providers(cls)


def _rebind_overridden_providers(cls: Any) -> None:
    """Make inherited providers use the subclass's providers of the same name.

    dependency-injector copies an inherited provider together with the base providers it refers to,
    so without this a redeclared ``clock`` would not reach ``memory_broker``. This is what its
    ``containers.copy`` decorator does, applied to every subclass.
    """
    own = dict(cls.cls_providers)
    inherited = cls.inherited_providers
    memo = {id(inherited[name]): provider for name, provider in own.items() if name in inherited}
    if not memo:
        return
    rebound = providers.deepcopy({name: p for name, p in inherited.items() if name not in own}, memo)
    rebound.update(providers.deepcopy(own, memo))
    for name, provider in rebound.items():
        setattr(cls, name, provider)
