"""A listener's RabbitMQ consumers: QoS, batched acks, release, dead letters, resuming after loss.

Each consumer owns a channel with ``prefetch`` as its QoS and consumes through aiormq directly (the
delivery tag is all the settling needs). Acks coalesce: every delivery finished within one turn of
the event loop is covered by one ``basic.ack(multiple=True)`` up to the contiguous finished tag, so
a consumer with a full prefetch window sends far fewer frames than one ack per message. When the
channel or the connection is lost, the consumer's outstanding tags are dropped (the broker
redelivers those messages) and the consumer opens a new channel and consumes again; it logs when it
is consuming again, which the broker confirmed with ``basic.consume-ok``.

Non-blocking retries republish the message to its delay-tier queue (confirmed) and only then ack it;
see :mod:`listeners.rabbit.retry` (jitter is not applied on RabbitMQ: a tier waits exactly its TTL).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from aio_pika.abc import AbstractChannel
from aiormq.abc import AbstractChannel as RawChannel
from aiormq.abc import DeliveredMessage

from listeners.deadletter.envelopes import rabbit_dead_letter
from listeners.exceptions import UnroutableError
from listeners.message import Headers, Message
from listeners.outcome import Retry
from listeners.rabbit.acks import ChannelAcks
from listeners.rabbit.amqp import header_pairs_from_table, kept_properties, timestamp_seconds
from listeners.rabbit.connection import RabbitConnection
from listeners.rabbit.retry import RETRY_COUNT, restore_retried, retry_headers, tier_ms
from listeners.retry.backoff import BackOffPolicy
from listeners.transport.base import Delivery, DeliverySink, Endpoint, Envelope

if TYPE_CHECKING:
    from listeners.rabbit.transport import RabbitTransport

log = logging.getLogger("listeners.rabbit")

REOPEN_BACKOFF = BackOffPolicy(initial=0.5, multiplier=2.0, maximum=15.0, jitter=0.1)


@dataclass(eq=False)
class _Session:
    """One channel's life: its deliveries can only be settled on it."""

    channel: AbstractChannel
    raw: RawChannel
    acks: ChannelAcks = field(default_factory=ChannelAcks)
    consumer_tag: str | None = None
    ack_due: int = 0
    acked: int = 0
    flushing: bool = False
    # Finished tags taken out of the ack run (see ChannelAcks.stragglers), to ack one by one. Every
    # flush sends them before it reads ack_due: a multiple-ack computed later may cover them, and the
    # broker closes the channel on an ack of a tag already acked.
    stragglers: list[int] = field(default_factory=list)
    sending: asyncio.Lock = field(default_factory=asyncio.Lock)


class ChannelConsumer:
    """One consumer of the listener's queue, on its own channel; the settler of its deliveries."""

    def __init__(
        self, connection: RabbitConnection, endpoint: Endpoint, sink: DeliverySink, transport: RabbitTransport
    ) -> None:
        self._connection = connection
        self._endpoint = endpoint
        self._sink = sink
        self._transport = transport
        self._queue = endpoint.options.queue or ""
        self._auto_ack = endpoint.options.ack_mode == "at_most_once"
        self._session: _Session | None = None
        self._stopping = False
        self._reopening: asyncio.Task[None] | None = None
        self._opening = asyncio.Lock()  # a lost channel and a reconnect may both try to resume
        self._unregister = connection.on_reconnect(self._resume)

    @property
    def consuming(self) -> bool:
        """Registered with the broker on an open channel of a live connection (false while either is
        being re-made, and once stopped)."""
        session = self._session
        return (
            session is not None
            and not self._stopping
            and self._connection.is_connected
            and not session.channel.is_closed
        )

    # lifecycle ------------------------------------------------------------------------------------

    async def open(self) -> None:
        """Open a channel, set QoS and consume; returns once the broker confirmed the consumer."""
        channel = await self._connection.channel()
        await channel.set_qos(prefetch_count=self._endpoint.options.prefetch)
        raw = await channel.get_underlay_channel()
        # Finished deliveries waiting behind a slow one keep at most a quarter of the window.
        session = _Session(channel, raw, ChannelAcks(straggler_limit=self._endpoint.options.prefetch // 4))
        channel.close_callbacks.add(lambda _channel, error: self._lost(session, error))

        async def on_message(message: DeliveredMessage) -> None:
            await self._deliver(session, message)

        ok = await raw.basic_consume(self._queue, on_message, no_ack=self._auto_ack)
        session.consumer_tag = ok.consumer_tag
        self._session = session

    async def stop(self) -> None:
        """Stop receiving; deliveries already received can still be settled."""
        self._stopping = True
        self._unregister()
        if self._reopening is not None:
            self._reopening.cancel()
        session = self._session
        if session is not None and session.consumer_tag and not session.channel.is_closed:
            with contextlib.suppress(Exception):
                await session.raw.basic_cancel(session.consumer_tag)

    async def close(self) -> None:
        """Close the channel; anything still unacknowledged goes back to the queue."""
        await self.stop()
        session, self._session = self._session, None
        if session is not None and not session.channel.is_closed:
            await self._flush(session)
            session.acks.close()
            with contextlib.suppress(Exception):
                await session.channel.close()

    def _lost(self, session: _Session, error: BaseException | None) -> None:
        session.acks.close()
        if self._stopping or session is not self._session:
            return
        self._session = None
        log.warning(
            "listener %s: channel on queue %r closed (%s); its unacknowledged messages return to the queue",
            self._endpoint.listener_id,
            self._queue,
            error,
        )
        if self._connection.is_connected and (self._reopening is None or self._reopening.done()):
            self._reopening = asyncio.ensure_future(self._reopen())

    async def _resume(self) -> None:
        """After a reconnect: consume again on the new connection."""
        if not self._stopping and self._session is None:
            await self._reopen()

    async def _reopen(self) -> None:
        for delay in REOPEN_BACKOFF.execution():
            try:
                async with self._opening:
                    if self._stopping or self._session is not None:
                        return
                    await self.open()
            except Exception as error:
                if not self._connection.is_connected:
                    return  # the reconnect will resume this consumer
                log.error("listener %s: consuming again failed, retrying in %.2gs: %s",
                          self._endpoint.listener_id, delay, error)  # fmt: skip
                await asyncio.sleep(delay)
                continue
            log.info("listener %s: consuming %r again", self._endpoint.listener_id, self._queue)
            return

    # delivering -----------------------------------------------------------------------------------

    async def _deliver(self, session: _Session, raw: DeliveredMessage) -> None:
        deliver: Any = raw.delivery
        tag: int = deliver.delivery_tag
        if not self._auto_ack:
            session.acks.delivered(tag)
        await self._sink.submit(Delivery(self._message(raw), self, (session, tag)))

    def _message(self, raw: DeliveredMessage) -> Message:
        properties = raw.header.properties
        delivery: Any = raw.delivery
        table = properties.headers
        message = Message(
            body=raw.body,
            headers=Headers(header_pairs_from_table(table)),
            destination=self._queue,
            listener_id=self._endpoint.listener_id,
            transport="rabbit",
            timestamp=timestamp_seconds(properties.timestamp),
            exchange=delivery.exchange,
            routing_key=delivery.routing_key,
            redelivered=bool(delivery.redelivered),
            raw=raw,
        )
        if table and RETRY_COUNT in table:
            restore_retried(message)  # back from a delay tier: its attempt, original exchange and key
        return message

    # Settler --------------------------------------------------------------------------------------

    def ack_now(self, delivery: Delivery) -> bool:
        return False  # acknowledgements are coalesced into one basic.ack per event-loop turn

    def holds_back_finished(self, delivery: Delivery) -> bool:
        return False  # each delivery is settled on its own

    async def ack(self, delivery: Delivery) -> None:
        session: _Session = delivery.handle[0]
        if self._auto_ack:
            return
        acks = session.acks
        due = acks.finished(delivery.handle[1])
        if due is not None:
            session.ack_due = max(session.ack_due, due)
        else:
            stragglers = acks.stragglers()
            if not stragglers:
                return
            session.stragglers += stragglers
        if session.flushing:
            return  # the ack being prepared covers this one too
        session.flushing = True
        try:
            await asyncio.sleep(0)  # let deliveries finishing in this turn join one multiple-ack
        finally:
            session.flushing = False
        await self._flush(session)

    async def _flush(self, session: _Session) -> None:
        async with session.sending:
            while session.stragglers and session.acks.open:
                tags, session.stragglers = session.stragglers, []
                for tag in tags:
                    await session.raw.basic_ack(tag, multiple=False)
            # No await from the check above to here: ack_due cannot cover a straggler not yet sent
            # (stragglers taken from now on lie beyond the first unfinished tag, so beyond ack_due).
            if session.acks.open and session.ack_due > session.acked:
                upto, session.acked = session.ack_due, session.ack_due
                await session.raw.basic_ack(upto, multiple=True)

    async def release(self, delivery: Delivery) -> None:
        session: _Session = delivery.handle[0]
        tag = delivery.handle[1]
        if self._auto_ack or not session.acks.owns(tag):
            return
        due = session.acks.settled(tag)
        await session.raw.basic_nack(tag, requeue=True)
        if due is not None:
            session.ack_due = max(session.ack_due, due)
            await self._flush(session)

    async def dead_letter(self, delivery: Delivery, error: BaseException) -> None:
        """Republish to the dead-letter queue keeping the message's AMQP properties (as Spring AMQP's
        RepublishMessageRecoverer does), its ``timestamp`` set to now: when it was dead-lettered, which
        ``listeners dlt`` filters by. Then ack."""
        message = delivery.message
        properties = getattr(getattr(message.raw, "header", None), "properties", None)
        envelope = rabbit_dead_letter(
            self._endpoint, message, error, getattr(properties, "content_type", None)
        )
        kept = kept_properties(properties) | {"timestamp": datetime.now(UTC)}
        await self._transport.republish(envelope, kept)
        await self.ack(delivery)

    async def retry_later(self, delivery: Delivery, retry: Retry) -> None:
        """Republish to the delay tier of ``retry`` (confirmed), then ack; raises, leaving the source
        unacknowledged, if the tier cannot be declared or the publish is not confirmed."""
        message = delivery.message
        properties = getattr(getattr(message.raw, "header", None), "properties", None)
        queue = await self._transport.retry_queue(self._endpoint, tier_ms(retry))
        envelope = Envelope(
            "",
            message.body,
            routing_key=queue,
            headers=retry_headers(message, retry),
            content_type=getattr(properties, "content_type", None),
        )
        try:
            await self._transport.republish(envelope, kept_properties(properties))
        except UnroutableError:
            self._transport.forget_retry_queue(queue)  # deleted under us: declare it again next time
            raise
        await self.ack(delivery)
