"""``@send_to``: publish a handler's return value, confirmed, before the inbound message is settled."""

from __future__ import annotations

from typing import Any

from listeners.message import Message, Outgoing
from listeners.publishing import KafkaPublisher, RabbitPublisher
from listeners.spec import ForwardTarget, TransportKind


class Forwarder:
    """Sends return values to one ``@send_to`` target.

    The forwarded message keeps the inbound key when both sides are Kafka (so per-key order carries
    over), unless the handler returns an :class:`~listeners.message.Outgoing` with its own key.
    """

    def __init__(
        self,
        target: ForwardTarget,
        listener_kind: TransportKind,
        kafka: KafkaPublisher,
        rabbit: RabbitPublisher,
    ) -> None:
        self._kind, self._destination, self._routing_key = target.resolve(listener_kind)
        self._kafka = kafka
        self._rabbit = rabbit

    async def __call__(self, result: Any, message: Message) -> None:
        value, key, headers = (
            (result.value, result.key, result.headers)
            if isinstance(result, Outgoing)
            else (result, None, None)
        )
        if self._kind == "kafka":
            if key is None and message.transport == "kafka":
                key = message.key
            await self._kafka.send(self._destination, value, key=key, headers=headers)
        else:
            await self._rabbit.publish(self._destination, self._routing_key, value, headers=headers)
