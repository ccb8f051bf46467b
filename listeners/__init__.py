"""listeners: Spring-style declarative message listeners for Kafka and RabbitMQ.

Declare handlers with :func:`kafka_listener` / :func:`rabbit_listener` (and :func:`send_to`), wire
them with a ``starter.ListenersContainer`` subclass, and run them with ``listeners run app:container``.
"""

from listeners.clock import Clock, ManualClock, SystemClock
from listeners.decorators import kafka_listener, rabbit_listener, send_to
from listeners.exceptions import (
    BrokerUnavailableError,
    ConfigError,
    DeclarationError,
    IdempotencyKeyError,
    IdempotencyStoreError,
    ListenersError,
    MessageDecodeError,
    MessageError,
    MessageTooLargeError,
    PublishError,
    RejectMessage,
    RetryLater,
    StartupError,
    TransportError,
    TransportUnavailableError,
    UnroutableError,
)
from listeners.idempotency.store import Claim, ClaimState, IdempotencyStore, StoreTransaction
from listeners.message import Header, Headers, Message, Outgoing
from listeners.publishing import KafkaPublisher, RabbitPublisher
from listeners.runtime.pipeline import Handler, Interceptor
from listeners.spec import Backoff, DeadLetter, Idempotency, ListenerOptions, Retry
from listeners.transport.base import PublishReceipt

__all__ = [
    "Backoff",
    "BrokerUnavailableError",
    "Claim",
    "ClaimState",
    "Clock",
    "ConfigError",
    "DeadLetter",
    "DeclarationError",
    "Handler",
    "Header",
    "Headers",
    "Idempotency",
    "IdempotencyKeyError",
    "IdempotencyStore",
    "IdempotencyStoreError",
    "Interceptor",
    "KafkaPublisher",
    "ListenerOptions",
    "ListenersError",
    "ManualClock",
    "Message",
    "MessageDecodeError",
    "MessageError",
    "MessageTooLargeError",
    "Outgoing",
    "PublishError",
    "PublishReceipt",
    "RabbitPublisher",
    "RejectMessage",
    "Retry",
    "RetryLater",
    "StartupError",
    "StoreTransaction",
    "SystemClock",
    "TransportError",
    "TransportUnavailableError",
    "UnroutableError",
    "kafka_listener",
    "rabbit_listener",
    "send_to",
]
