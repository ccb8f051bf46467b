"""Kafka transport configuration: client arguments, security, pass-through checks, error translation."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest
from aiokafka import errors

from listeners import BrokerUnavailableError, ConfigError, MessageTooLargeError, TransportError
from listeners.kafka.clients import common_options, consumer_options, producer_options
from listeners.kafka.config import KafkaConfig
from listeners.kafka.errors import translate
from listeners.spec import ListenerOptions
from listeners.transport.base import Endpoint
from starter import ApplicationSettings, LaunchOptions, load_settings

ENDPOINT = Endpoint("billing", "kafka", ListenerOptions(topics=("orders",), auto_offset_reset="latest"))


def test_consumer_options_pass_config_through_and_keep_what_the_framework_owns() -> None:
    config = KafkaConfig(
        bootstrap_servers="b:9092", consumer={"session_timeout_ms": 12_000}, max_poll_records=7
    )
    options = consumer_options(config, ENDPOINT)
    assert options["bootstrap_servers"] == "b:9092"
    assert options["session_timeout_ms"] == 12_000
    assert options["max_poll_records"] == 7
    assert (options["group_id"], options["enable_auto_commit"], options["auto_offset_reset"]) == (
        "billing",
        False,
        "latest",
    )


@pytest.mark.parametrize(
    ("consumer", "message"),
    [
        (
            {"sesion_timeout_ms": 1},
            r"listeners\.kafka\.consumer\.sesion_timeout_ms: not an option of AIOKafkaConsumer",
        ),
        (
            {"enable_auto_commit": True},
            r"listeners\.kafka\.consumer\.enable_auto_commit: set by listeners itself",
        ),
    ],
)
def test_bad_consumer_pass_through_options_are_config_errors(
    consumer: dict[str, object], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        consumer_options(KafkaConfig(consumer=consumer), ENDPOINT)


def test_producer_options_from_config() -> None:
    config = KafkaConfig.model_validate(
        {
            "producer": {
                "acks": "1",
                "linger": "20ms",
                "compression": "none",
                "options": {"request_timeout_ms": 9},
            }
        }
    )
    options = producer_options(config)
    assert (options["acks"], options["linger_ms"], options["compression_type"]) == (1, 20, None)
    assert options["enable_idempotence"] is False, "off by default: Tansu rejects idempotent producers"
    assert options["request_timeout_ms"] == 9
    with pytest.raises(ConfigError, match=r"producer\.options\.nope: not an option of AIOKafkaProducer"):
        producer_options(KafkaConfig.model_validate({"producer": {"options": {"nope": 1}}}))


def test_sasl_scram_over_tls_sets_credentials_and_an_ssl_context() -> None:
    config = KafkaConfig.model_validate(
        {
            "security": {
                "protocol": "SASL_SSL",
                "sasl_mechanism": "SCRAM-SHA-512",
                "username": "svc",
                "password": "s3cret",
                "check_hostname": False,
            }
        }
    )
    options = common_options(config)
    assert options["security_protocol"] == "SASL_SSL"
    assert (options["sasl_mechanism"], options["sasl_plain_username"], options["sasl_plain_password"]) == (
        "SCRAM-SHA-512",
        "svc",
        "s3cret",
    )
    assert isinstance(options["ssl_context"], ssl.SSLContext)
    assert options["ssl_context"].check_hostname is False
    assert "s3cret" not in repr(config)


def test_sasl_without_credentials_is_a_config_error_naming_the_file(tmp_path: Path) -> None:
    (tmp_path / "application.yaml").write_text(
        "listeners:\n  kafka:\n    security: {protocol: SASL_PLAINTEXT, sasl_mechanism: PLAIN}\n"
    )
    with pytest.raises(ConfigError) as error:
        load_settings(ApplicationSettings, LaunchOptions(config_dir=tmp_path, environ={}))
    assert "listeners.kafka.security: protocol SASL_PLAINTEXT needs username, password" in str(error.value)
    assert str(tmp_path / "application.yaml") in str(error.value)


@pytest.mark.parametrize(
    ("error", "expected", "retryable"),
    [
        (errors.KafkaConnectionError("down"), BrokerUnavailableError, True),
        (errors.NoBrokersAvailable(), BrokerUnavailableError, True),
        (errors.MessageSizeTooLargeError(), MessageTooLargeError, False),
        (errors.UnknownTopicOrPartitionError(), TransportError, True),
        (errors.CommitFailedError("rebalanced"), TransportError, False),
    ],
)
def test_client_errors_are_translated_keeping_retryability(
    error: Exception, expected: type[TransportError], retryable: bool
) -> None:
    translated = translate(error, "send to orders")
    assert type(translated) is expected
    assert translated.retryable is retryable
    assert str(translated).startswith("send to orders failed: ")
