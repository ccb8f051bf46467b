"""A Kafka record handed to a listener, whose :class:`~listeners.message.Message` is built on first use.

Without interceptors the listener container needs only a record's body (see
:class:`~listeners.runtime.pipeline.DirectCall`) and the settler only its offset, so on that path most
records never become a Message: building one is about a tenth of a small record's whole cost.
"""

from __future__ import annotations

from collections.abc import Callable

from aiokafka.structs import ConsumerRecord

from listeners.kafka.commits import HeldPartition
from listeners.message import Message
from listeners.transport.base import Delivery, Settler

MessageBuilder = Callable[[ConsumerRecord[bytes, bytes]], Message]


class RecordDelivery(Delivery):
    """One record of a partition held in ``handle``; ``message`` is built from ``record`` when read."""

    __slots__ = ("_build", "_message", "record")

    def __init__(
        self,
        record: ConsumerRecord[bytes, bytes],
        build: MessageBuilder,
        settler: Settler,
        partition: HeldPartition,
        message: Message | None = None,
    ) -> None:
        self.record = record
        self.body = record.value or b""
        self._build = build
        self._message = message
        self.settler = settler
        self.handle = partition

    @property
    def message(self) -> Message:
        message = self._message
        if message is None:
            message = self._message = self._build(self.record)
        return message

    @message.setter
    def message(self, message: Message) -> None:
        self._message = message
