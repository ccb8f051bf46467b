"""Settings models: the ``listeners:`` section of ``application.yaml`` and its profiles.

Every model rejects unknown keys. Applications add their own top-level sections by subclassing
:class:`ApplicationSettings` (like Spring's ``@ConfigurationProperties``) and declaring it as the
container's ``settings_model``.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from listeners.durations import Duration
from listeners.idempotency.config import IdempotencySettings
from listeners.kafka.config import KafkaConfig
from listeners.rabbit.config import RabbitConfig
from listeners.spec import ListenerOptions


class Section(BaseModel):
    """Base of settings sections: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid")


class MemorySettings(Section):
    """``listeners.memory``: the embedded broker."""

    partitions: int = Field(default=3, ge=1)


class ExecutorSettings(Section):
    """``listeners.executor``: the bounded thread pool that runs sync handlers."""

    max_workers: int = Field(default=16, ge=1)


class TracingSettings(Section):
    """``listeners.tracing``: OpenTelemetry spans for sent and handled messages.

    ``exporter``: ``none`` (spans are made and sampled, not exported), ``console``, ``otlp`` (needs
    the ``otlp`` extra; ``endpoint`` is the collector's traces URL). ``link``: a handled message's
    span starts a new trace linked to the sender's instead of continuing it. An application that
    installed its own SDK TracerProvider keeps it (then only ``link`` applies).
    """

    enabled: bool = False
    exporter: Literal["none", "console", "otlp"] = "none"
    endpoint: str | None = None
    sample_ratio: float = Field(default=1.0, ge=0.0, le=1.0)
    service_name: str | None = None
    link: bool = False


class MetricsSettings(Section):
    """``listeners.metrics``: OpenTelemetry metrics of handled and sent messages, listener counters and
    consumer lag.

    Off (the default) costs nothing: no instruments, no pipeline step. On, the metrics go to the
    ``/metrics`` endpoint when ``listeners.server.port`` is set (needs the ``prometheus`` extra), and
    to an SDK MeterProvider the application installed itself, which is then used as it is.
    ``lag_interval``: how often RabbitMQ queue depths are read (a passive queue declare per listener).
    ``service_name``: the ``service.name`` of a provider made here.
    """

    enabled: bool = False
    lag_interval: Duration = 5.0
    service_name: str | None = None


class ServerSettings(Section):
    """``listeners.server``: the HTTP endpoints ``/health/live``, ``/health/ready`` and ``/metrics``.

    ``port``: null (the default) runs no server; 0 picks a free port (tests).
    """

    port: int | None = Field(default=None, ge=0, le=65535)
    host: str = "0.0.0.0"


class LoggingSettings(Section):
    """``listeners.logging``: ``format`` ``text`` or ``json`` (one object per line) of ``listeners run``'s
    log lines, each with the trace and span id of the current span; ``per_message``: one INFO line per
    handled message (off by default: it costs throughput)."""

    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    format: Literal["text", "json"] = "text"
    per_message: bool = False


class ListenersSettings(Section):
    """The ``listeners:`` section."""

    kafka: KafkaConfig = KafkaConfig()
    rabbit: RabbitConfig = RabbitConfig()
    memory: MemorySettings = MemorySettings()
    defaults: ListenerOptions = ListenerOptions()
    listener: dict[str, ListenerOptions] = Field(default_factory=dict)
    shutdown_timeout: Duration = 30.0
    broker_wait: Duration = 0.0
    """How long startup keeps trying a broker it cannot reach (then fails); 0 fails at once."""
    gc_freeze: bool = True
    """Freeze the heap once started (``gc.freeze()``): full garbage collections then skip it."""
    executor: ExecutorSettings = ExecutorSettings()
    idempotency: IdempotencySettings = IdempotencySettings()
    tracing: TracingSettings = TracingSettings()
    metrics: MetricsSettings = MetricsSettings()
    server: ServerSettings = ServerSettings()
    logging: LoggingSettings = LoggingSettings()


class ApplicationSettings(BaseSettings):
    """Root of the configuration. Subclass it to add application sections next to ``listeners``."""

    model_config = SettingsConfigDict(extra="forbid", env_nested_delimiter="__", case_sensitive=False)

    listeners: ListenersSettings = ListenersSettings()
