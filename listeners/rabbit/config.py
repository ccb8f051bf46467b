"""Configuration of the RabbitMQ transport (``listeners.rabbit``); pure pydantic, loads no client."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

from pydantic import BaseModel, ConfigDict, SecretStr

from listeners.durations import Duration

MEMORY_URL = "memory://"


class RabbitSection(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RabbitTls(RabbitSection):
    """``listeners.rabbit.tls``: for ``amqps://`` URLs (certificates; client certificate optional)."""

    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    verify: bool = True


class RabbitReconnect(RabbitSection):
    """``listeners.rabbit.reconnect``: back-off between attempts after a lost connection (never gives up)."""

    initial: Duration = 0.5
    maximum: Duration = 15.0


class RabbitConfig(RabbitSection):
    """``listeners.rabbit``: where RabbitMQ listeners and the Rabbit publisher connect, and how.

    The URL carries the credentials (``amqp://user:password@host:5672/vhost``, ``amqps://`` for TLS)
    and is a secret: it is shown with the password masked.
    """

    url: SecretStr = SecretStr(MEMORY_URL)
    connection_name: str = "listeners"
    heartbeat: Duration = 30.0
    tls: RabbitTls = RabbitTls()
    reconnect: RabbitReconnect = RabbitReconnect()
    publish_timeout: Duration = 30.0

    @property
    def embedded(self) -> bool:
        return self.url.get_secret_value() == MEMORY_URL

    def display(self) -> str:
        return mask_url(self.url.get_secret_value())


def mask_url(url: str) -> str:
    """``amqp://user:***@host/vhost``: the URL with any password hidden."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    netloc = f"{parts.username}:***@{host}" if parts.username else f":***@{host}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
