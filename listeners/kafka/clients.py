"""aiokafka client arguments from ``listeners.kafka`` config: servers, security, pass-through options."""

from __future__ import annotations

import inspect
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.helpers import create_ssl_context

from listeners.exceptions import ConfigError
from listeners.kafka.config import KafkaConfig
from listeners.transport.base import Endpoint

OWNED_CONSUMER_OPTIONS = frozenset(
    {"group_id", "enable_auto_commit", "auto_offset_reset", "bootstrap_servers", "key_deserializer",
     "value_deserializer", "loop"}
)  # fmt: skip


def common_options(config: KafkaConfig) -> dict[str, Any]:
    """Servers, client id, TLS and SASL, shared by consumers, producers and the admin client."""
    security = config.security
    options: dict[str, Any] = {
        "bootstrap_servers": config.bootstrap_servers,
        "client_id": config.client_id,
        "security_protocol": security.protocol,
    }
    if security.uses_tls:
        options["ssl_context"] = create_ssl_context(
            cafile=security.ca_file,
            certfile=security.cert_file,
            keyfile=security.key_file,
            password=security.key_password.get_secret_value() if security.key_password else None,
        )
        options["ssl_context"].check_hostname = security.check_hostname
    if security.protocol.startswith("SASL_"):
        assert security.password is not None  # guaranteed by KafkaSecurity's validator
        options["sasl_mechanism"] = security.sasl_mechanism
        options["sasl_plain_username"] = security.username
        options["sasl_plain_password"] = security.password.get_secret_value()
    return options


def consumer_options(config: KafkaConfig, endpoint: Endpoint) -> dict[str, Any]:
    """Arguments for one consumer of ``endpoint``: config pass-through, then what the framework owns."""
    _check_pass_through(config.consumer, AIOKafkaConsumer, "listeners.kafka.consumer", OWNED_CONSUMER_OPTIONS)
    return {
        "max_poll_records": config.max_poll_records,
        **config.consumer,
        **common_options(config),
        "group_id": endpoint.group_id,
        "enable_auto_commit": False,
        "auto_offset_reset": endpoint.options.auto_offset_reset,
    }


def session_timeout(config: KafkaConfig) -> float:
    """Seconds the group waits for a silent member before it hands that member's partitions to others
    (``session_timeout_ms`` passed through, else aiokafka's default)."""
    default = inspect.signature(AIOKafkaConsumer).parameters["session_timeout_ms"].default
    return float(config.consumer.get("session_timeout_ms", default)) / 1000


def producer_options(config: KafkaConfig) -> dict[str, Any]:
    """Arguments for the transport's producer."""
    producer = config.producer
    _check_pass_through(producer.options, AIOKafkaProducer, "listeners.kafka.producer.options", frozenset())
    acks: Any = producer.acks
    if isinstance(acks, str) and acks != "all":
        acks = int(acks)
    return {
        **producer.options,
        **common_options(config),
        "acks": acks,
        "linger_ms": int(producer.linger * 1000),
        "compression_type": None if producer.compression == "none" else producer.compression,
        "max_batch_size": producer.max_batch_size,
        "enable_idempotence": producer.enable_idempotence,
    }


def _check_pass_through(options: dict[str, Any], client: type, key: str, owned: frozenset[str]) -> None:
    accepted = set(inspect.signature(client).parameters) - {"args", "kwargs"}
    for name in options:
        if name in owned:
            raise ConfigError(f"{key}.{name}: set by listeners itself; use the listener option instead")
        if name not in accepted:
            raise ConfigError(f"{key}.{name}: not an option of {client.__name__}")
