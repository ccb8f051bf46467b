"""One RabbitMQ connection per transport, reconnected by us, with everything on it re-established.

aio-pika's robust connection restores channels and consumers on its own, and its issues #563 and
#231 describe consumers that never came back. Here the connection is a plain one: when it is lost,
:class:`RabbitConnection` reconnects with back-off (forever, logging each failure) and then runs every
registered ``on_reconnect`` callback, which is how each consumer opens a new channel, consumes again
and confirms it; publishers open a new channel on their next publish.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import Awaitable, Callable
from typing import Any

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractConnection

from listeners.exceptions import BrokerUnavailableError
from listeners.rabbit.config import RabbitConfig
from listeners.rabbit.errors import translate
from listeners.retry.backoff import BackOffPolicy

log = logging.getLogger("listeners.rabbit")

Reconnected = Callable[[], Awaitable[None]]


class RabbitConnection:
    """The transport's connection: connect, notice its loss, reconnect, tell the consumers."""

    def __init__(self, config: RabbitConfig) -> None:
        self._config = config
        self._connection: AbstractConnection | None = None
        self._connected = asyncio.Event()
        self._closing = False
        self._reconnecting: asyncio.Task[None] | None = None
        self._on_reconnect: list[Reconnected] = []
        self._backoff = BackOffPolicy(
            initial=config.reconnect.initial, multiplier=2.0, maximum=config.reconnect.maximum, jitter=0.1
        )

    @property
    def is_connected(self) -> bool:
        return self._connected.is_set()

    def on_reconnect(self, callback: Reconnected) -> Callable[[], None]:
        """Run ``callback`` after every reconnect; returns a function that unregisters it."""
        self._on_reconnect.append(callback)
        return lambda: self._on_reconnect.remove(callback) if callback in self._on_reconnect else None

    async def start(self) -> None:
        """Connect now; failing here fails the application's startup."""
        await self._connect()

    async def close(self) -> None:
        self._closing = True
        if self._reconnecting is not None:
            self._reconnecting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reconnecting
        if self._connection is not None:
            connection, self._connection = self._connection, None
            self._connected.clear()
            with contextlib.suppress(Exception):
                await connection.close()

    async def channel(
        self, *, publisher_confirms: bool = False, on_return_raises: bool = False
    ) -> AbstractChannel:
        """A new channel, waiting up to ``publish_timeout`` for a connection that is being re-made."""
        try:
            await asyncio.wait_for(self._connected.wait(), self._config.publish_timeout)
        except TimeoutError:
            raise BrokerUnavailableError(
                f"no connection to RabbitMQ at {self._config.display()} for {self._config.publish_timeout}s"
            ) from None
        assert self._connection is not None
        try:
            return await self._connection.channel(
                publisher_confirms=publisher_confirms, on_return_raises=on_return_raises
            )
        except Exception as error:
            raise translate(error, "opening a channel") from error

    async def _connect(self) -> None:
        try:
            connection = await aio_pika.connect(
                self._config.url.get_secret_value(),
                ssl_context=self._ssl_context(),
                client_properties={"connection_name": self._config.connection_name},
                heartbeat=int(self._config.heartbeat),
            )
        except Exception as error:
            raise translate(error, f"connecting to RabbitMQ at {self._config.display()}") from error
        connection.close_callbacks.add(self._lost)
        self._connection = connection
        self._connected.set()

    def _lost(self, _connection: Any, error: BaseException | None) -> None:
        if self._closing or self._connection is None:
            return
        self._connected.clear()
        log.warning("connection to RabbitMQ at %s lost (%s); reconnecting", self._config.display(), error)
        if self._reconnecting is None or self._reconnecting.done():
            self._reconnecting = asyncio.ensure_future(self._reconnect())

    async def _reconnect(self) -> None:
        for delay in self._backoff.execution():
            try:
                await self._connect()
            except Exception as error:
                log.error("reconnecting to RabbitMQ failed, trying again in %.2gs: %s", delay, error)
                await asyncio.sleep(delay)
                continue
            log.info("reconnected to RabbitMQ at %s", self._config.display())
            for callback in list(self._on_reconnect):
                try:
                    await callback()
                except Exception as error:  # a consumer that cannot resume says so; the others go on
                    log.error("resuming after the reconnect failed: %s", error, exc_info=error)
            return

    def _ssl_context(self) -> ssl.SSLContext | None:
        if not self._config.url.get_secret_value().startswith("amqps://"):
            return None
        tls = self._config.tls
        context = ssl.create_default_context(cafile=tls.ca_file)
        if tls.cert_file:
            context.load_cert_chain(tls.cert_file, tls.key_file)
        if not tls.verify:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return context
