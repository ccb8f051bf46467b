"""Broker-neutral messages: what a handler receives (:class:`Message`) and may return (:class:`Outgoing`)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from listeners.spec import TransportKind

HeaderPairs = tuple[tuple[str, bytes], ...]
HeaderInput = Mapping[str, str | bytes] | Iterable[tuple[str, str | bytes]] | None


def header_pairs(headers: HeaderInput) -> HeaderPairs:
    """Normalise user-supplied headers (mapping or pairs; str or bytes values) to ``(name, bytes)`` pairs."""
    if not headers:
        return ()
    items = headers.items() if isinstance(headers, Mapping) else headers
    return tuple((name, value.encode() if isinstance(value, str) else bytes(value)) for name, value in items)


class Headers(Mapping[str, bytes]):
    """Read-only message headers.

    Kafka allows a header name more than once; lookups return the last value (as Spring does) and
    :meth:`get_all` returns every value. :attr:`pairs` keeps the original order byte for byte.
    """

    __slots__ = ("_index", "pairs")

    def __init__(self, pairs: HeaderPairs = ()) -> None:
        self.pairs = pairs
        self._index: dict[str, bytes] | None = None

    def _lookup(self) -> dict[str, bytes]:
        if self._index is None:
            self._index = dict(self.pairs)
        return self._index

    def __getitem__(self, name: str) -> bytes:
        return self._lookup()[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._lookup())

    def __len__(self) -> int:
        return len(self._lookup())

    def get_all(self, name: str) -> list[bytes]:
        """Every value of ``name``, in arrival order."""
        return [value for key, value in self.pairs if key == name]

    def get_str(self, name: str, default: str | None = None) -> str | None:
        """The last value of ``name`` decoded as UTF-8 (undecodable bytes replaced), or ``default``."""
        value = self._lookup().get(name)
        return default if value is None else value.decode("utf-8", errors="replace")

    def __repr__(self) -> str:
        return f"Headers({list(self.pairs)!r})"


@dataclass(slots=True)
class Message:
    """One inbound message, the same shape for every transport.

    Declare a parameter of this type in a handler to receive it. Fields that a transport does not have
    are None (``partition``/``offset`` on RabbitMQ, ``exchange``/``routing_key`` on Kafka).
    ``attempt`` is 1 on the first delivery and grows with each retry. ``raw`` is the client's own
    message object for the rare case that needs it. For a batch listener the pipeline sees one
    message whose ``batch`` holds the records (``offset`` is the first one's). ``retry_started`` is
    the epoch time of the first failed attempt once one failed (see ``retry.timeout``). Treat it as
    read-only; it is not frozen only because building frozen dataclasses costs a measurable share of
    the per-message budget.
    """

    body: bytes
    headers: Headers
    destination: str
    listener_id: str
    transport: TransportKind
    key: bytes | None = None
    partition: int | None = None
    offset: int | None = None
    timestamp: float | None = None
    attempt: int = 1
    exchange: str | None = None
    routing_key: str | None = None
    redelivered: bool = False
    group_id: str | None = None
    batch: tuple[Message, ...] = field(default=(), repr=False)
    raw: Any = field(default=None, repr=False, compare=False)
    retry_started: float | None = field(default=None, repr=False, compare=False)

    def next_attempt(self) -> Message:
        """This message as its next delivery attempt."""
        return replace(self, attempt=self.attempt + 1)

    def describe(self) -> str:
        """Where this message came from, for log lines: ``orders[2]@15`` or ``notifications#7``."""
        if self.partition is not None:
            if len(self.batch) > 1:
                return f"{self.destination}[{self.partition}]@{self.offset}..{self.batch[-1].offset}"
            return f"{self.destination}[{self.partition}]@{self.offset}"
        return self.destination

    @property
    def records(self) -> tuple[Message, ...]:
        """The messages this one stands for: its batch, or itself."""
        return self.batch or (self,)


def batch_message(messages: list[Message]) -> Message:
    """One pipeline message for records of one partition handed to a batch listener together."""
    first = messages[0]
    return replace(first, body=b"", headers=Headers(), key=None, batch=tuple(messages), raw=None)


EMPTY_HEADERS = Headers()
"""Shared by messages without headers (Headers is immutable)."""


@dataclass(frozen=True, slots=True)
class Outgoing:
    """A value to send, with the key and headers to send it with.

    Return one from a ``@send_to`` handler to choose the forwarded message's key or headers; by default
    the forwarded message keeps the inbound key and gets no extra headers.
    """

    value: Any
    key: str | bytes | None = None
    headers: HeaderInput = None


@dataclass(frozen=True, slots=True)
class Header:
    """Marks a handler parameter that receives one header.

    ``request_id: Annotated[str, Header("x-request-id")]``.

    The value is converted to the parameter's type (``bytes`` as is, ``str`` as UTF-8, others through
    pydantic). A missing header uses the parameter's default; without one, the message is fatal.
    """

    name: str
