"""aiokafka errors translated into ``listeners.exceptions`` at the transport boundary."""

from __future__ import annotations

from aiokafka import errors

from listeners.exceptions import (
    BrokerUnavailableError,
    ListenersError,
    MessageTooLargeError,
    PublishError,
    TransportError,
)


def translate(error: BaseException, action: str) -> ListenersError:
    """The framework error for an aiokafka error raised while doing ``action``; keeps retryability."""
    if isinstance(error, ListenersError):
        return error
    detail = str(error)
    name = type(error).__name__
    text = f"{action} failed: {detail if detail.startswith(name) else f'{name}: {detail}'}"
    if isinstance(error, errors.KafkaConnectionError | errors.NoBrokersAvailable):
        return BrokerUnavailableError(text)
    if isinstance(error, errors.MessageSizeTooLargeError | errors.RecordTooLargeError):
        return MessageTooLargeError(text)
    if isinstance(error, errors.KafkaTimeoutError | errors.RequestTimedOutError):
        return PublishError(text) if action.startswith("send") else BrokerUnavailableError(text)
    translated = TransportError(text)
    translated.retryable = bool(getattr(error, "retriable", False))
    return translated
