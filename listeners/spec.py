"""What a listener declares: frozen option models shared by decorators and configuration.

The same models validate decorator arguments (``retry=Retry(attempts=5)`` or ``retry={"attempts": 5}``),
``listeners.defaults`` and ``listeners.listener.<id>`` in YAML/env, so a value means the same thing
wherever it is written. Which fields a layer set explicitly is pydantic's ``model_fields_set``; the
starter merges layers by those fields and records where each effective value came from.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from listeners.durations import Duration

TransportKind = Literal["kafka", "rabbit"]
Ordering = Literal["partition", "key", "none"]
AckMode = Literal["at_least_once", "at_most_once"]
RetryMode = Literal["blocking", "non-blocking"]
ExchangeType = Literal["direct", "topic", "fanout", "headers"]
OffsetReset = Literal["earliest", "latest"]
StoreName = Literal["memory", "sqlite", "redis", "postgres"]


def exception_name(value: Any) -> Any:
    """Accept an exception class or a dotted name; store the dotted name (``module.QualName``)."""
    if isinstance(value, type) and issubclass(value, BaseException):
        module = value.__module__
        return value.__qualname__ if module == "builtins" else f"{module}.{value.__qualname__}"
    return value


ExceptionRef = Annotated[str, BeforeValidator(exception_name)]


def _as_tuple(value: Any) -> Any:
    return (value,) if isinstance(value, str) else value


class OptionModel(BaseModel):
    """Base of option models: immutable, unknown keys rejected."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class Backoff(OptionModel):
    """Delay between attempts: ``delay * multiplier ** (attempt - 1)``, capped at ``max_delay``, jittered."""

    delay: Duration = 1.0
    multiplier: float = Field(default=2.0, ge=1.0)
    max_delay: Duration = 30.0
    jitter: float = Field(default=0.1, ge=0.0, le=1.0)


class Retry(OptionModel):
    """Retry policy of a listener. ``attempts`` counts the first delivery (1 = no retry).

    ``timeout`` bounds the whole retry sequence: a failure whose next attempt would start more than
    ``timeout`` after the message's first failure goes to the dead letter at once.
    """

    attempts: int = Field(default=3, ge=1)
    backoff: Backoff = Backoff()
    timeout: Duration | None = None
    mode: RetryMode = "blocking"
    retryable: tuple[ExceptionRef, ...] = ()
    not_retryable: tuple[ExceptionRef, ...] = ()


class DeadLetter(OptionModel):
    """Where exhausted and fatal messages go. Disabled means: logged at ERROR and acknowledged."""

    enabled: bool = True
    destination: str | None = None
    max_stacktrace: int = Field(default=4096, ge=0)


class Idempotency(OptionModel):
    """Per-listener idempotency options (the default store is chosen in ``listeners.idempotency``).

    ``transactional``: commit the key in the handler's own database transaction (a store that supports
    it, ``postgres``; the handler declares a ``StoreTransaction`` parameter and writes on its
    connection) instead of claim, handle, complete.
    """

    store: StoreName | None = None
    ttl: Duration = 7 * 86400.0
    lease: Duration = 30.0
    on_store_error: Literal["fail_closed", "fail_open"] = "fail_closed"
    transactional: bool = False


class ListenerOptions(OptionModel):
    """Every option a listener has, settable on the decorator and overridable in config.

    Kafka-only: ``topics`` or ``topic_pattern`` (a regular expression), ``group_id``,
    ``auto_offset_reset``, ``batch`` (the handler receives the records of one poll and partition as a
    list). RabbitMQ-only: ``queue``, ``exchange``, ``exchange_type``, ``routing_key``,
    ``binding_arguments`` (headers exchanges), ``prefetch``, ``declare`` (false: only check that the
    queue and exchange exist), ``durable``, ``queue_type`` (classic or quorum), ``queue_arguments``,
    ``single_active_consumer`` (strict order across consumers).
    ``ordering`` defaults per transport (Kafka ``partition``, RabbitMQ ``none``). An empty
    ``routing_key`` binds with the exchange type's natural key: ``#`` for topic, the queue name for
    direct, none for fanout.
    """

    topics: Annotated[tuple[str, ...] | None, BeforeValidator(_as_tuple)] = None
    topic_pattern: str | None = None
    group_id: str | None = None
    auto_offset_reset: OffsetReset = "earliest"
    batch: bool = False
    queue: str | None = None
    exchange: str | None = None
    exchange_type: ExchangeType = "topic"
    routing_key: Annotated[tuple[str, ...], BeforeValidator(_as_tuple)] = ()
    binding_arguments: dict[str, Any] = Field(default_factory=dict)
    prefetch: int = Field(default=100, ge=1)
    declare: bool = True
    durable: bool = True
    queue_type: Literal["classic", "quorum"] = "classic"
    queue_arguments: dict[str, Any] = Field(default_factory=dict)
    single_active_consumer: bool = False

    concurrency: int = Field(default=1, ge=1)
    auto_startup: bool = True
    ordering: Ordering | None = None
    max_in_flight: int = Field(default=256, ge=1)
    ack_mode: AckMode = "at_least_once"
    retry: Retry = Retry()
    dead_letter: DeadLetter = DeadLetter()
    idempotency: Idempotency = Idempotency()


KAFKA_ONLY = frozenset({"topics", "topic_pattern", "group_id", "auto_offset_reset", "batch"})
RABBIT_ONLY = frozenset(
    {
        "queue", "exchange", "exchange_type", "routing_key", "binding_arguments", "prefetch", "declare",
        "durable", "queue_type", "queue_arguments", "single_active_consumer",
    }
)  # fmt: skip

IdempotencyKey = str | Callable[..., str]


@dataclass(frozen=True, slots=True)
class ForwardTarget:
    """Where ``@send_to`` forwards a handler's return value.

    ``transport`` is None for "the listener's own transport" (see :meth:`resolve`). For Kafka
    ``destination`` is a topic; for RabbitMQ an exchange, with ``routing_key``.
    """

    destination: str
    routing_key: str = ""
    transport: TransportKind | None = None

    def resolve(self, listener_kind: TransportKind) -> tuple[TransportKind, str, str]:
        """``(transport, destination, routing_key)`` for a listener of ``listener_kind``.

        A plain destination on a RabbitMQ listener reads as Spring AMQP's ``"exchange/routing.key"``;
        without a ``/`` it is a routing key on the default exchange.
        """
        if self.transport is not None:
            return self.transport, self.destination, self.routing_key
        if listener_kind == "kafka":
            return "kafka", self.destination, ""
        exchange, slash, routing_key = self.destination.partition("/")
        return ("rabbit", exchange, routing_key) if slash else ("rabbit", "", self.destination)

    def describe(self) -> str:
        kind = f"{self.transport}:" if self.transport else ""
        return f"{kind}{self.destination}" + (f"/{self.routing_key}" if self.routing_key else "")


@dataclass(frozen=True, slots=True)
class ListenerSpec:
    """What one ``@kafka_listener`` / ``@rabbit_listener`` declares about one handler.

    ``options`` carries only the fields the decorator set; defaults and config are merged at startup.
    """

    kind: TransportKind
    qualname: str
    module: str
    id: str | None
    options: ListenerOptions
    idempotency_key: IdempotencyKey | None = None

    @property
    def handler_name(self) -> str:
        """``module.QualName`` of the handler, used in every error about it."""
        return f"{self.module}.{self.qualname}"

    @property
    def effective_id(self) -> str:
        """Declared id, or one from the qualified name: ``Notifier.on_event`` -> ``notifier_on_event``."""
        return self.id if self.id is not None else derive_id(self.qualname)


def derive_id(qualname: str) -> str:
    """Listener id derived from a qualified name; safe in YAML keys and env var names."""
    parts = [part for part in qualname.split(".") if part != "<locals>"]
    return "_".join(parts).lower()


def normalize_id(listener_id: str) -> str:
    """Form used to match ids against env vars, where case and ``-``/``.`` cannot be kept."""
    return "".join(ch if ch.isalnum() else "_" for ch in listener_id).lower()
