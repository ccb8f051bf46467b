"""The public surface: exactly what __all__ promises, each name importable and documented."""

from __future__ import annotations

import listeners
import starter

LISTENERS_API = {
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
}

STARTER_API = {
    "ApplicationSettings",
    "LaunchOptions",
    "ListenersApplication",
    "ListenersContainer",
    "ListenersSettings",
    "LoadedSettings",
    "Section",
    "load_settings",
}


def test_listeners_exports_exactly_its_public_api() -> None:
    assert set(listeners.__all__) == LISTENERS_API
    assert len(listeners.__all__) == len(LISTENERS_API), "no duplicates in __all__"


def test_starter_exports_exactly_its_public_api() -> None:
    assert set(starter.__all__) == STARTER_API


def test_every_public_name_exists_and_is_documented() -> None:
    for module in (listeners, starter):
        for name in module.__all__:
            value = getattr(module, name)
            if name in {"Handler"}:  # a type alias
                continue
            assert (value.__doc__ or "").strip(), f"{module.__name__}.{name} has no docstring"


def test_nothing_public_is_left_out_of_all() -> None:
    public = {name for name in vars(listeners) if not name.startswith("_")}
    submodules = {
        "clock",
        "codec",
        "decorators",
        "deadletter",
        "discovery",
        "durations",
        "exceptions",
        "idempotency",
        "tracing",
        "logs",
        "metrics",
        "server",
        "memory",
        "kafka",
        "rabbit",
        "message",
        "outcome",
        "publishing",
        "retry",
        "runtime",
        "spec",
        "transport",
        "testing",
        "cli",
    }
    assert public - submodules - set(listeners.__all__) == set()
