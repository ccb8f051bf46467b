"""Configuration of the Kafka transport (``listeners.kafka``). Pure pydantic: importing it loads no client."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

from listeners.durations import Duration

MEMORY_URL = "memory://"


class KafkaSection(BaseModel):
    model_config = ConfigDict(extra="forbid")


class KafkaSecurity(KafkaSection):
    """``listeners.kafka.security``: TLS and SASL (PLAIN, SCRAM)."""

    protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    username: str | None = None
    password: SecretStr | None = None
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    key_password: SecretStr | None = None
    check_hostname: bool = True

    @model_validator(mode="after")
    def _sasl_needs_credentials(self) -> KafkaSecurity:
        if self.protocol.startswith("SASL_"):
            missing = [
                name for name in ("sasl_mechanism", "username", "password") if getattr(self, name) is None
            ]
            if missing:
                raise ValueError(f"protocol {self.protocol} needs {', '.join(missing)}")
        return self

    @property
    def uses_tls(self) -> bool:
        return self.protocol in ("SSL", "SASL_SSL")


class KafkaProducerConfig(KafkaSection):
    """``listeners.kafka.producer``. ``options`` passes any other AIOKafkaProducer argument through.

    ``enable_idempotence`` is off by default: brokers without idempotent producers (Tansu, used by the
    tests) reject InitProducerId; turn it on for Apache Kafka.
    """

    acks: Literal["all", "1", "0", 1, 0, -1] = "all"
    linger: Duration = 0.005
    compression: Literal["none", "gzip", "snappy", "lz4", "zstd"] = "none"
    max_batch_size: int = Field(default=16384, ge=1)
    enable_idempotence: bool = False
    options: dict[str, Any] = Field(default_factory=dict)


class KafkaProvisioning(KafkaSection):
    """``listeners.kafka.provisioning``: create missing listener, delay, retry and dead-letter topics at
    startup, and a topic's delay topic on the first delayed send to it."""

    enabled: bool = False
    partitions: int = Field(default=3, ge=1)
    replication_factor: int = Field(default=1, ge=1)


class KafkaConfig(KafkaSection):
    """``listeners.kafka``: where Kafka listeners and the Kafka publisher connect, and how.

    ``consumer`` passes AIOKafkaConsumer arguments through (e.g. ``session_timeout_ms``,
    ``max_poll_interval_ms``); the framework owns ``group_id``, ``enable_auto_commit`` and
    ``auto_offset_reset`` (a listener option).
    """

    bootstrap_servers: str | list[str] = MEMORY_URL
    client_id: str = "listeners"
    security: KafkaSecurity = KafkaSecurity()
    consumer: dict[str, Any] = Field(default_factory=dict)
    producer: KafkaProducerConfig = KafkaProducerConfig()
    provisioning: KafkaProvisioning = KafkaProvisioning()
    commit_interval: Duration = 0.5
    commit_count: int = Field(default=1000, ge=1)
    """Commit early once this many records finished since the last commit (and at least every interval)."""
    poll_timeout: Duration = 0.1
    max_poll_records: int = Field(default=500, ge=1)
    revoke_timeout: Duration = 30.0

    @property
    def embedded(self) -> bool:
        return self.bootstrap_servers == MEMORY_URL

    def display(self) -> str:
        servers = self.bootstrap_servers
        return servers if isinstance(servers, str) else ",".join(servers)
