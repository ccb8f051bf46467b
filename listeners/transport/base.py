"""The transport seam: what every broker integration (memory, Kafka, RabbitMQ) provides.

A transport publishes :class:`Envelope` s with confirmation and turns a listener's :class:`Endpoint`
into a :class:`Subscription` that feeds :class:`Delivery` s into a :class:`DeliverySink` (the
listener container). The container decides what happens to each delivery and calls back into the
delivery's :class:`Settler` to ack, dead-letter, republish for retry or release it. Only the
transport knows what those mean on its broker.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from listeners.message import HeaderPairs, Message
from listeners.outcome import Retry
from listeners.spec import ListenerOptions, TransportKind


@dataclass(slots=True)
class Envelope:
    """An encoded message ready to publish.

    ``destination`` is a Kafka topic or a RabbitMQ exchange (``""`` is the default exchange).
    ``delay`` asks for delivery no earlier than that many seconds from now. Treat it as read-only
    (use :func:`dataclasses.replace`); it is not frozen because a frozen dataclass costs a
    measurable share of a pipelined send.
    """

    destination: str
    body: bytes
    key: bytes | None = None
    routing_key: str = ""
    headers: HeaderPairs = ()
    partition: int | None = None
    content_type: str | None = None
    delay: float | None = None


@dataclass(slots=True)
class PublishReceipt:
    """Confirmation of a publish. ``partition``/``offset`` are set by log-based transports (read-only,
    not frozen for the same reason as :class:`Envelope`)."""

    destination: str
    partition: int | None = None
    offset: int | None = None


@dataclass(frozen=True, slots=True)
class Endpoint:
    """What a transport needs to know about one listener: its id and fully resolved options."""

    listener_id: str
    kind: TransportKind
    options: ListenerOptions

    @property
    def group_id(self) -> str:
        """Kafka consumer group: the declared one, else the listener id (Spring's ``idIsGroup``)."""
        return self.options.group_id or self.listener_id

    @property
    def sources(self) -> tuple[str, ...]:
        """Topics for Kafka (none for a pattern subscription), the queue for RabbitMQ."""
        if self.kind == "kafka":
            return self.options.topics or ()
        return (self.options.queue,) if self.options.queue else ()

    @property
    def binding_keys(self) -> tuple[str, ...]:
        """RabbitMQ routing keys to bind with: the declared ones, else the exchange type's natural key
        (``#`` for topic, the queue name for direct, none for fanout and headers)."""
        options = self.options
        if options.routing_key:
            return options.routing_key
        if options.exchange_type == "direct":
            return (options.queue or "",)
        return ("#",) if options.exchange_type == "topic" else ("",)

    def describe_sources(self) -> str:
        r"""``topics=a,b``, ``pattern=orders\..*`` or ``queue=q`` for log lines."""
        if self.kind == "kafka":
            pattern = self.options.topic_pattern
            return f"pattern={pattern}" if pattern else f"topics={','.join(self.sources)}"
        options = self.options
        if options.exchange is None:
            return f"queue={options.queue}"
        keys = ",".join(self.binding_keys)
        return (
            f"queue={options.queue} exchange={options.exchange}({options.exchange_type}) routing_key={keys}"
        )


class Settler(Protocol):
    """Settles deliveries on the broker. Each method returns once the broker confirmed it."""

    async def ack(self, delivery: Delivery) -> None:
        """Done: acknowledge, or mark the offset complete for the next commit."""
        ...

    def ack_now(self, delivery: Delivery) -> bool:
        """Acknowledge at once if that needs no broker round trip (a log transport marks the offset
        finished for its next commit) and return True; return False, doing nothing, if the caller
        must await :meth:`ack` instead."""
        ...

    def holds_back_finished(self, delivery: Delivery) -> bool:
        """Whether leaving ``delivery`` (not started) unsettled would have deliveries that finished
        after it delivered again (a log transport commits only up to the first unfinished offset); the
        container then runs it on stop and revoke rather than releasing it."""
        ...

    async def release(self, delivery: Delivery) -> None:
        """Give it back unsettled so it is delivered again (RabbitMQ requeue; Kafka: do not commit)."""
        ...

    async def dead_letter(self, delivery: Delivery, error: BaseException) -> None:
        """Publish the original to the dead-letter destination (confirmed), then acknowledge it."""
        ...

    async def retry_later(self, delivery: Delivery, retry: Retry) -> None:
        """Republish for attempt ``retry.next_attempt`` after ``retry.delay`` through the broker's delay
        tiers (confirmed), then acknowledge it."""
        ...


class Delivery:
    """One message handed to a listener, with the means to settle it. ``handle`` is transport-private."""

    __slots__ = ("body", "handle", "message", "settler")

    def __init__(self, message: Message, settler: Settler, handle: Any = None) -> None:
        self.message = message
        self.body = message.body
        """The message's body (a transport's delivery may hold it before its :class:`Message` exists)."""
        self.settler = settler
        self.handle = handle


class DeliverySink(Protocol):
    """Where a subscription puts deliveries: the listener container, which bounds in-flight work."""

    async def submit(self, delivery: Delivery) -> None:
        """Accept a delivery, waiting while the listener is at its in-flight bound."""
        ...

    def has_capacity(self) -> bool:
        """Whether :meth:`submit` would accept a delivery without waiting."""
        ...

    def offer(self, delivery: Delivery) -> bool:
        """Accept a delivery if there is room, without waiting; False (nothing taken) at the bound."""
        ...

    def room(self) -> int:
        """How many deliveries :meth:`offer_run` would accept now (0 while stopping)."""
        ...

    def offer_run(self, deliveries: Sequence[Delivery]) -> int:
        """Accept deliveries of one partition, in order, as far as there is room (none are waited for);
        returns how many were taken, always a prefix of ``deliveries``."""
        ...

    async def wait_capacity(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for room; True if there is room now."""
        ...

    async def drain(self, matches: Callable[[Message], bool], timeout: float) -> bool:
        """Wait until no matching delivery is in flight; False if ``timeout`` passed first."""
        ...


class Subscription(Protocol):
    """A listener's consumers on one transport."""

    async def start(self) -> None:
        """Connect consumers and start feeding the sink."""
        ...

    async def stop(self) -> None:
        """Stop fetching. Deliveries already handed out may still be settled."""
        ...

    async def close(self) -> None:
        """After in-flight work drained or was released: final commit, leave the group, free resources."""
        ...

    def describe(self) -> str:
        """Sources for log lines, e.g. ``topics=orders group=billing``."""
        ...

    @property
    def consuming(self) -> bool:
        """Whether every consumer receives messages now (readiness reads it): false before a Kafka
        consumer joined its group, while a RabbitMQ connection or channel is being re-made, once
        stopped."""
        ...


class Transport(Protocol):
    """A broker connection that publishes and subscribes."""

    kind: TransportKind
    name: str

    async def start(self) -> None:
        """Connect. Safe to call once; publishing and subscribing need it."""
        ...

    async def close(self) -> None:
        """Disconnect and free every resource."""
        ...

    async def publish(self, envelope: Envelope) -> PublishReceipt:
        """Publish and return once the broker confirmed it."""
        ...

    async def publish_many(self, envelopes: list[Envelope]) -> list[PublishReceipt]:
        """Publish all, pipelined, and return once the broker confirmed every one (in order)."""
        ...

    async def declare(self, endpoint: Endpoint) -> None:
        """Create what ``endpoint`` consumes from (topics; queues, exchanges, bindings).

        Called for every listener before any listener starts, so a handler that forwards to another
        listener's exchange or topic never finds it missing.
        """
        ...

    def subscribe(self, endpoint: Endpoint, sink: DeliverySink) -> Subscription:
        """A subscription for the listener described by ``endpoint``; not started."""
        ...

    def describe(self) -> str:
        """Where this transport connects, without secrets."""
        ...
