"""aio-pika / aiormq errors translated into ``listeners.exceptions`` at the transport boundary."""

from __future__ import annotations

import asyncio

from aiormq import exceptions as amqp
from pamqp.commands import Basic

from listeners.exceptions import (
    BrokerUnavailableError,
    ListenersError,
    PublishError,
    TransportError,
    UnroutableError,
)


def translate(error: BaseException, action: str) -> ListenersError:
    """The framework error for a client error raised while doing ``action``; keeps retryability."""
    if isinstance(error, ListenersError):
        return error
    text = f"{action} failed: {type(error).__name__}: {error}"
    if isinstance(error, amqp.DeliveryError):
        if isinstance(error.frame, Basic.Return):
            return UnroutableError(f"{action}: no queue is bound for it ({error.frame.reply_text})")
        return PublishError(f"{action} was refused by the broker: {error}")
    if isinstance(error, amqp.ProbableAuthenticationError | amqp.AuthenticationError):
        return TransportError(f"{action} failed: the broker refused the credentials: {error}")
    if isinstance(
        error, amqp.ChannelNotFoundEntity | amqp.ChannelPreconditionFailed | amqp.ChannelAccessRefused
    ):
        return TransportError(text)
    if isinstance(error, asyncio.TimeoutError):
        return (
            PublishError(f"{action} was not confirmed in time")
            if action.startswith("publish")
            else (BrokerUnavailableError(f"{action} timed out"))
        )
    if isinstance(
        error, amqp.AMQPConnectionError | amqp.ChannelInvalidStateError | ConnectionError | OSError
    ):
        return BrokerUnavailableError(text)
    return TransportError(text)
