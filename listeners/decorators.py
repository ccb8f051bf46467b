"""``@kafka_listener``, ``@rabbit_listener`` and ``@send_to``: they declare, they connect nothing.

Each decorator validates its arguments and attaches a frozen :class:`~listeners.spec.ListenerSpec`
to the function (a function may carry several, as Spring's repeatable ``@KafkaListener``). The
function itself is returned unchanged, so the decorators can sit above or below
dependency-injector's ``@inject`` and wiring still patches the function.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable
from typing import Any, TypeVar

from pydantic import ValidationError

from listeners.exceptions import DeclarationError
from listeners.runtime.parameters import check_declaration
from listeners.spec import (
    KAFKA_ONLY,
    RABBIT_ONLY,
    DeadLetter,
    ForwardTarget,
    Idempotency,
    IdempotencyKey,
    ListenerOptions,
    ListenerSpec,
    Retry,
    TransportKind,
)

F = TypeVar("F", bound=Callable[..., Any])

SPECS_ATTR = "__listeners_specs__"
FORWARD_ATTR = "__listeners_forward__"


def listener_specs(obj: Any) -> tuple[ListenerSpec, ...]:
    """The listener specs declared on ``obj`` (a function or method), if any."""
    specs = getattr(obj, SPECS_ATTR, ())
    return specs if isinstance(specs, tuple) else ()


def forward_target(obj: Any) -> ForwardTarget | None:
    """The ``@send_to`` target declared on ``obj``, if any."""
    target = getattr(obj, FORWARD_ATTR, None)
    return target if isinstance(target, ForwardTarget) else None


def kafka_listener(
    *topics: str,
    pattern: str | None = None,
    id: str | None = None,
    group_id: str | None = None,
    concurrency: int | None = None,
    auto_startup: bool | None = None,
    ordering: str | None = None,
    max_in_flight: int | None = None,
    ack_mode: str | None = None,
    auto_offset_reset: str | None = None,
    batch: bool | None = None,
    retry: Retry | dict[str, Any] | None = None,
    dead_letter: DeadLetter | dict[str, Any] | None = None,
    idempotency: Idempotency | dict[str, Any] | None = None,
    idempotency_key: IdempotencyKey | None = None,
    **unknown: Any,
) -> Callable[[F], F]:
    """Declare a Kafka listener on ``topics`` (or topics matching ``pattern``), like ``@KafkaListener``.

    The group defaults to the listener id, and the id to one derived from the handler's qualified
    name. Every option can be overridden per listener id in ``listeners.listener.<id>``. With
    ``batch=True`` the handler takes ``list[T]`` (and optionally ``list[Message]``): the records of one
    poll and one partition, committed after it returns.
    """
    declared = _given(
        topics=topics or None,
        topic_pattern=pattern,
        group_id=group_id,
        concurrency=concurrency,
        auto_startup=auto_startup,
        ordering=ordering,
        max_in_flight=max_in_flight,
        ack_mode=ack_mode,
        auto_offset_reset=auto_offset_reset,
        batch=batch,
        retry=retry,
        dead_letter=dead_letter,
        idempotency=idempotency,
    )
    return _declare("kafka", "kafka_listener", id, declared, unknown, idempotency_key)


def rabbit_listener(
    queue: str | None = None,
    *,
    id: str | None = None,
    exchange: str | None = None,
    routing_key: str | tuple[str, ...] | list[str] | None = None,
    exchange_type: str | None = None,
    binding_arguments: dict[str, Any] | None = None,
    prefetch: int | None = None,
    declare: bool | None = None,
    durable: bool | None = None,
    queue_type: str | None = None,
    queue_arguments: dict[str, Any] | None = None,
    single_active_consumer: bool | None = None,
    concurrency: int | None = None,
    auto_startup: bool | None = None,
    ordering: str | None = None,
    max_in_flight: int | None = None,
    ack_mode: str | None = None,
    retry: Retry | dict[str, Any] | None = None,
    dead_letter: DeadLetter | dict[str, Any] | None = None,
    idempotency: Idempotency | dict[str, Any] | None = None,
    idempotency_key: IdempotencyKey | None = None,
    **unknown: Any,
) -> Callable[[F], F]:
    """Declare a RabbitMQ listener on ``queue``, like Spring's ``@RabbitListener``.

    With ``exchange`` the queue is bound to it with ``routing_key`` (Spring's ``@QueueBinding``).
    """
    declared = _given(
        queue=queue,
        exchange=exchange,
        routing_key=routing_key,
        exchange_type=exchange_type,
        binding_arguments=binding_arguments,
        prefetch=prefetch,
        declare=declare,
        durable=durable,
        queue_type=queue_type,
        queue_arguments=queue_arguments,
        single_active_consumer=single_active_consumer,
        concurrency=concurrency,
        auto_startup=auto_startup,
        ordering=ordering,
        max_in_flight=max_in_flight,
        ack_mode=ack_mode,
        retry=retry,
        dead_letter=dead_letter,
        idempotency=idempotency,
    )
    return _declare("rabbit", "rabbit_listener", id, declared, unknown, idempotency_key)


def send_to(
    destination: str | None = None,
    *,
    topic: str | None = None,
    exchange: str | None = None,
    routing_key: str | None = None,
) -> Callable[[F], F]:
    """Forward the handler's return value (unless None), like Spring's ``@SendTo``.

    ``send_to("topic")`` sends on the listener's own transport: a Kafka topic, or for RabbitMQ
    ``"exchange/routing.key"`` (Spring AMQP's form; without ``/`` the default exchange and the text as
    routing key). ``topic=`` always means Kafka; ``exchange=`` / ``routing_key=`` always mean RabbitMQ.
    The forward is confirmed by the broker before the inbound message is acknowledged.
    """
    target = _forward_target(destination, topic, exchange, routing_key)

    def decorate(fn: F) -> F:
        _check_callable(fn, "send_to")
        if forward_target(fn) is not None:
            raise DeclarationError(
                f"{_name(fn)}: @send_to is applied twice; a handler forwards to one destination"
            )
        setattr(fn, FORWARD_ATTR, target)
        return fn

    return decorate


def _forward_target(
    destination: str | None, topic: str | None, exchange: str | None, routing_key: str | None
) -> ForwardTarget:
    given = [name for name, value in (("destination", destination), ("topic", topic)) if value is not None]
    rabbit = exchange is not None or routing_key is not None
    if len(given) + int(rabbit) != 1:
        raise DeclarationError(
            "send_to needs exactly one of: a destination, topic=..., or exchange=/routing_key=..."
        )
    if topic is not None:
        return ForwardTarget(destination=topic, transport="kafka")
    if rabbit:
        return ForwardTarget(destination=exchange or "", routing_key=routing_key or "", transport="rabbit")
    if not destination:
        raise DeclarationError("send_to destination must not be empty")
    return ForwardTarget(destination=destination)


def _given(**values: Any) -> dict[str, Any]:
    return {name: value for name, value in values.items() if value is not None}


def _declare(
    kind: TransportKind,
    decorator: str,
    listener_id: str | None,
    declared: dict[str, Any],
    unknown: dict[str, Any],
    idempotency_key: IdempotencyKey | None,
) -> Callable[[F], F]:
    def decorate(fn: F) -> F:
        _check_callable(fn, decorator)
        where = f"@{decorator} on {_name(fn)}"
        if unknown:
            raise DeclarationError(f"{where}: {_unknown_options(unknown, kind)}")
        if listener_id is not None and not _valid_id(listener_id):
            raise DeclarationError(
                f"{where}: id {listener_id!r} must start with a letter or digit and contain only "
                "letters, digits, '_', '-' and '.'"
            )
        try:
            options = ListenerOptions.model_validate(declared)
        except ValidationError as error:
            raise DeclarationError(f"{where}: {_describe(error)}") from None
        if kind == "kafka" and not options.topics and not options.topic_pattern:
            raise DeclarationError(f"{where}: no topics given; use @kafka_listener('topic', ...) or pattern=")
        if options.topics and options.topic_pattern:
            raise DeclarationError(f"{where}: give topics or a pattern, not both")
        if options.topic_pattern is not None:
            _check_pattern(options.topic_pattern, where)
        if kind == "rabbit" and not options.queue:
            raise DeclarationError(f"{where}: no queue given; use @rabbit_listener('queue', ...)")
        if idempotency_key is not None and not (
            isinstance(idempotency_key, str) or callable(idempotency_key)
        ):
            raise DeclarationError(
                f"{where}: idempotency_key must be a field path, 'header:<name>' or a callable"
            )
        check_declaration(fn, where, batch=options.batch)
        spec = ListenerSpec(
            kind=kind,
            qualname=fn.__qualname__,
            module=fn.__module__,
            id=listener_id,
            options=options,
            idempotency_key=idempotency_key,
        )
        setattr(fn, SPECS_ATTR, (*listener_specs(fn), spec))
        return fn

    return decorate


def _check_pattern(pattern: str, where: str) -> None:
    try:
        re.compile(pattern)
    except re.error as error:
        raise DeclarationError(f"{where}: pattern {pattern!r} is not a regular expression: {error}") from None


def _check_callable(fn: Any, decorator: str) -> None:
    if isinstance(fn, staticmethod | classmethod):
        raise DeclarationError(
            f"@{decorator} on {_name(fn.__func__)}: put @{decorator} below @{type(fn).__name__}, "
            "on the function itself"
        )
    if not callable(fn) or not hasattr(fn, "__qualname__"):
        raise DeclarationError(f"@{decorator} must decorate a function or method, not {fn!r}")


def _name(fn: Any) -> str:
    return f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', repr(fn))}"


def _valid_id(listener_id: str) -> bool:
    return (
        bool(listener_id)
        and listener_id[0].isalnum()
        and all(ch.isalnum() or ch in "_-." for ch in listener_id)
    )


def _unknown_options(unknown: dict[str, Any], kind: TransportKind) -> str:
    other = RABBIT_ONLY if kind == "kafka" else KAFKA_ONLY
    known = sorted(set(ListenerOptions.model_fields) - other | {"id", "idempotency_key"})
    parts = []
    for name in sorted(unknown):
        if name in other:
            parts.append(f"{name!r} is not a {kind} option")
            continue
        close = difflib.get_close_matches(name, known, n=1)
        parts.append(f"unknown option {name!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
    return "; ".join(parts)


def _describe(error: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(part) for part in issue['loc'])}: {issue['msg']}" for issue in error.errors()
    )
