"""Queues, exchanges and bindings from a listener's declaration (Spring's ``@QueueBinding``).

With ``declare: true`` (the default) everything is declared, idempotently: durable exchange, the
queue (classic or quorum, single-active-consumer, extra arguments), its bindings, the dead-letter
queue and, for non-blocking retries, one classic delay-tier queue per back-off delay (see
:mod:`listeners.rabbit.retry`). With ``declare: false`` it is only checked, passively, and a missing
queue or exchange is an error that names it.
"""

from __future__ import annotations

from typing import Any

import aio_pika
from aio_pika.abc import AbstractChannel
from aiormq import exceptions as amqp

from listeners.deadletter.naming import rabbit_dead_letter_queue
from listeners.exceptions import TransportError
from listeners.rabbit.errors import translate
from listeners.rabbit.retry import tier_queue_arguments
from listeners.retry.delayed import (
    DELAY_EXCHANGE,
    rabbit_delay_binding,
    rabbit_delay_queue,
    rabbit_delay_queue_arguments,
)
from listeners.retry.destinations import rabbit_retry_queue, retry_tiers
from listeners.transport.base import Endpoint

ExchangeKind = aio_pika.ExchangeType


def queue_arguments(endpoint: Endpoint) -> dict[str, Any]:
    """``x-queue-type``, ``x-single-active-consumer`` and the declared extra arguments."""
    options = endpoint.options
    arguments: dict[str, Any] = {}
    if options.queue_type == "quorum":
        arguments["x-queue-type"] = "quorum"
    if options.single_active_consumer:
        arguments["x-single-active-consumer"] = True
    arguments.update(options.queue_arguments)
    return arguments


async def declare(open_channel: Any, endpoint: Endpoint) -> None:
    """Declare (or check) what ``endpoint`` consumes from. ``open_channel`` makes a fresh channel.

    A failed passive check closes its channel, so every check gets its own.
    """
    options = endpoint.options
    queue = options.queue or ""
    passive = not options.declare
    if options.exchange is not None:
        await _exchange(await open_channel(), options.exchange, options.exchange_type, passive, endpoint)
    await _queue(await open_channel(), queue, options.durable, queue_arguments(endpoint), passive, endpoint)
    if options.dead_letter.enabled:
        dead = rabbit_dead_letter_queue(endpoint)
        arguments = {"x-queue-type": "quorum"} if options.queue_type == "quorum" else {}
        await _queue(await open_channel(), dead, True, arguments, passive, endpoint)
    for tier in retry_tiers(options):
        await declare_retry_queue(open_channel, endpoint, tier, passive=passive)
    if options.exchange is not None and not passive:
        channel = await open_channel()
        try:
            declared = await channel.get_queue(queue, ensure=False)
            for key in endpoint.binding_keys:
                await declared.bind(
                    options.exchange, routing_key=key, arguments=options.binding_arguments or None
                )
        except Exception as error:
            raise translate(error, f"binding queue {queue!r} to exchange {options.exchange!r}") from error
        finally:
            await channel.close()


async def declare_retry_queue(
    open_channel: Any, endpoint: Endpoint, tier: int, *, passive: bool = False
) -> str:
    """Declare (or check) the delay-tier queue of ``endpoint`` for ``tier`` ms; returns its name.

    Durable and classic (also next to a quorum work queue), ``x-message-ttl`` = ``tier``, dead-lettered
    through the default exchange back to the work queue.
    """
    queue = endpoint.options.queue or ""
    name = rabbit_retry_queue(queue, tier)
    await _queue(await open_channel(), name, True, tier_queue_arguments(queue, tier), passive, endpoint)
    return name


async def check_exchange(open_channel: Any, name: str, purpose: str) -> None:
    """Passively check that exchange ``name`` exists (the default exchange always does)."""
    if name == "":
        return
    channel = await open_channel()
    try:
        await channel.get_exchange(name, ensure=True)
    except amqp.ChannelNotFoundEntity:
        raise TransportError(
            f"{purpose}: exchange {name!r} does not exist; declare it (or start a listener that "
            "declares it) first"
        ) from None
    except Exception as error:
        raise translate(error, f"checking exchange {name!r}") from error
    finally:
        if not channel.is_closed:
            await channel.close()


async def declare_delay_queue(open_channel: Any, exchange: str, ms: int) -> str:
    """Declare the delayed-publish exchange, the delay queue of (``exchange``, ``ms``) and its binding
    (see :mod:`listeners.rabbit.delay`); returns the queue's name."""
    name = rabbit_delay_queue(exchange, ms)
    channel = await open_channel()
    action = f"declaring the exchange {DELAY_EXCHANGE!r}"
    try:
        await channel.declare_exchange(DELAY_EXCHANGE, ExchangeKind.HEADERS, durable=True)
        action = f"declaring the delay queue {name!r}"
        queue = await channel.declare_queue(
            name, durable=True, arguments=rabbit_delay_queue_arguments(exchange, ms)
        )
        await queue.bind(DELAY_EXCHANGE, routing_key="", arguments=rabbit_delay_binding(exchange, ms))
    except amqp.ChannelPreconditionFailed as error:
        raise TransportError(f"{action}: it exists with other settings than expected: {error}") from None
    except Exception as error:
        raise translate(error, action) from error
    finally:
        if not channel.is_closed:
            await channel.close()
    return name


async def _exchange(
    channel: AbstractChannel, name: str, kind: str, passive: bool, endpoint: Endpoint
) -> None:
    try:
        await channel.declare_exchange(name, ExchangeKind(kind), durable=True, passive=passive)
    except amqp.ChannelNotFoundEntity:
        raise TransportError(
            f"listener {endpoint.listener_id}: exchange {name!r} does not exist "
            "(declare: false only checks; create it or set declare: true)"
        ) from None
    except amqp.ChannelPreconditionFailed as error:
        raise TransportError(
            f"listener {endpoint.listener_id}: exchange {name!r} exists with other settings: {error}"
        ) from None
    except Exception as error:
        raise translate(error, f"declaring exchange {name!r}") from error
    finally:
        if not channel.is_closed:
            await channel.close()


async def _queue(
    channel: AbstractChannel,
    name: str,
    durable: bool,
    arguments: dict[str, Any],
    passive: bool,
    endpoint: Endpoint,
) -> None:
    try:
        await channel.declare_queue(name, durable=durable, arguments=arguments or None, passive=passive)
    except amqp.ChannelNotFoundEntity:
        raise TransportError(
            f"listener {endpoint.listener_id}: queue {name!r} does not exist "
            "(declare: false only checks; create it or set declare: true)"
        ) from None
    except amqp.ChannelPreconditionFailed as error:
        raise TransportError(
            f"listener {endpoint.listener_id}: queue {name!r} exists with other arguments "
            f"than declared: {error}"
        ) from None
    except Exception as error:
        raise translate(error, f"declaring queue {name!r}") from error
    finally:
        if not channel.is_closed:
            await channel.close()
