"""The dead-letter store seam: browse a dead-letter topic or queue, and replay what is in it.

One implementation per transport (``listeners.kafka.dead_letters``, ``listeners.rabbit.dead_letters``,
``listeners.memory.dead_letters``), found for a transport by
:func:`listeners.transport.registry.dead_letter_store`. Browsing never consumes: a Kafka dead-letter
topic is read without a consumer group and nothing is committed; RabbitMQ messages are taken
unacknowledged and go back in place when the browse ends. Replaying republishes (confirmed) and then
removes the dead letter where the broker can (RabbitMQ: acknowledge it); Kafka dead letters stay.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Any, Protocol

from listeners.message import HeaderPairs
from listeners.spec import TransportKind
from listeners.transport.base import Envelope


@dataclass(frozen=True, slots=True)
class StoredDeadLetter:
    """One dead letter as the broker holds it.

    ``partition``/``offset`` locate a Kafka record; ``index`` is a RabbitMQ message's place in its
    queue when the browse started (0 is the head). ``timestamp`` (epoch seconds) is when it was
    dead-lettered, when the broker knows (Kafka: the record's timestamp; RabbitMQ: the ``timestamp``
    property, which the framework's dead letters do not set). ``handle`` is store-private.
    """

    destination: str
    body: bytes
    headers: HeaderPairs = ()
    key: bytes | None = None
    partition: int | None = None
    offset: int | None = None
    index: int | None = None
    timestamp: float | None = None
    content_type: str | None = None
    handle: Any = field(default=None, repr=False, compare=False)

    @property
    def position(self) -> str:
        """``orders-dlt[2]@15`` (Kafka) or ``mails.dlq#3`` (RabbitMQ)."""
        if self.partition is not None:
            return f"{self.destination}[{self.partition}]@{self.offset}"
        return f"{self.destination}#{self.index}"


class DeadLetterBrowse(Protocol):
    """The dead letters of one destination, read once, in order, as a bounded async iterator."""

    total: int
    """How many dead letters the destination held (from ``since`` on, where the broker can seek by
    time) when the browse started: what iterating goes through, give or take concurrent changes."""

    def __aiter__(self) -> AsyncIterator[StoredDeadLetter]: ...


class DeadLetterStore(Protocol):
    """Reads and replays the dead letters of one transport."""

    kind: TransportKind
    removes_replayed: bool
    """Whether :meth:`replay` removes the dead letter (RabbitMQ) or leaves it in place (Kafka)."""

    def browse(
        self, destination: str, *, since: float | None = None
    ) -> AbstractAsyncContextManager[DeadLetterBrowse]:
        """Open ``destination`` (a dead-letter topic or queue) for reading; raises
        :class:`~listeners.exceptions.TransportError` if it does not exist. ``since`` (epoch seconds)
        lets a log skip what is older; filtering is the caller's. Leaving the context puts back every
        dead letter that was not replayed."""
        ...

    async def replay(self, letter: StoredDeadLetter, envelope: Envelope) -> None:
        """Publish ``envelope`` (confirmed), then remove ``letter`` if the broker can. Call it inside
        the browse that yielded ``letter``. If the publish fails, the dead letter stays and this raises."""
        ...
