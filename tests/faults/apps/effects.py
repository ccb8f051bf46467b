"""The message-fault scenarios' app: handlers whose behaviour per message is planned in its payload.

Every handler records each invocation in ``<schema>.invocations`` of the oracle
(:mod:`tests.faults.oracle`), reaches the barrier's hold point (:mod:`tests.faults.barriers`), then
does what the payload plans:

- ``fail: n``: raise :class:`Transient` (retryable) while the invocations recorded so far for the
  message's business key (this one included) are at most ``n`` (``fail: 99``: always);
- ``fatal``: raise :class:`Fatal` (the scenarios mark it ``not_retryable`` in config);
- ``reject``: raise :class:`~listeners.RejectMessage` (dead-lettered at once);
- ``big: n``: return a value of about ``n`` bytes (the forwarding listeners send it with ``@send_to``);
- otherwise: insert the effect into ``<schema>.effects``.

Rows are ``(id, key, seq, pid)`` with ``id`` the message id and ``key`` the message's business key
(``business``, else its id), so a scenario can count effects per message or per business key. A
payload that does not validate (a poison message) never reaches a handler.

Containers (one listener each, so a worker connects only to what its scenario uses):

- ``kafka_container`` / ``rabbit_container``: plain at-least-once listeners ``effects_kafka`` /
  ``effects_rabbit``; the plan decides, the effect is written after it (a failing attempt writes none);
- ``kafka_keyed_container`` / ``rabbit_keyed_container``: ``effects_kafka_keyed`` /
  ``effects_rabbit_keyed`` with ``idempotency_key="business"`` (claim, handle, complete; the store
  comes from config);
- ``kafka_tx_container`` / ``rabbit_tx_container``: ``effects_kafka_tx`` / ``effects_rabbit_tx``,
  idempotency in the PostgreSQL store's transactional mode: the effect is inserted on the key's
  transaction *before* the plan runs, so a failing attempt rolls its effect back with its key;
- ``kafka_forward_container``: ``effects_kafka_forward`` (records the invocation, returns the event,
  padded by ``big``, which ``@send_to`` forwards to ``FAULT_FORWARD_TOPIC``) and ``effects_sink``
  (a listener of that topic that inserts the effect); ``rabbit_forward_container``: the same with
  ``effects_rabbit_forward`` reading a queue and forwarding to the Kafka topic.

Every container has an interceptor holding messages *before* the idempotency claim while
``FAULT_PRECLAIM_DIR`` (a second barrier directory) says so, so that duplicates can be let go
together and race for their key.

Env: ``FAULT_PG_DSN``, ``FAULT_PG_SCHEMA``, ``FAULT_BARRIER_DIR`` and ``FAULT_PRECLAIM_DIR``
(optional), ``FAULT_FORWARD_TOPIC`` (forwarding containers), and the listeners' sources and brokers
(``LISTENERS__LISTENER__<ID>__TOPICS`` / ``..._QUEUE``, ``LISTENERS__KAFKA__*``, ``LISTENERS__RABBIT__URL``).
"""

from __future__ import annotations

import json
import os
import re
from typing import Any

from dependency_injector import providers
from pydantic import BaseModel

from listeners import Message, RejectMessage, StoreTransaction, kafka_listener, rabbit_listener, send_to
from listeners.outcome import Outcome
from listeners.runtime.pipeline import Handler
from starter import ListenersContainer
from tests.faults.apps.recorder import Recorder, opened
from tests.faults.barriers import HoldPoint

PRECLAIM_ENV = "FAULT_PRECLAIM_DIR"
FORWARD_ENV = "FAULT_FORWARD_TOPIC"
TRANSACTIONAL = {"store": "postgres", "transactional": True}
_ID = re.compile(rb'"id"\s*:\s*"([^"]+)"')


class Transient(Exception):
    """A failure worth retrying (planned with ``fail``)."""


class Fatal(Exception):
    """A failure the scenarios configure as not retryable (planned with ``fatal``)."""


class Planned(BaseModel):
    id: str
    key: str
    seq: int
    business: str | None = None
    fail: int = 0
    fatal: bool = False
    reject: bool = False
    big: int = 0

    @property
    def business_key(self) -> str:
        return self.business or self.id


class Forwarded(BaseModel):
    id: str
    key: str
    seq: int
    business: str | None = None
    pad: str = ""


def message_id(body: bytes) -> str | None:
    """The ``id`` of a payload, found even in one that is not valid JSON."""
    found = _ID.search(body)
    return found.group(1).decode(errors="replace") if found else None


class Effects(Recorder):
    """The database side and the plan, shared by every listener class below."""

    def __init__(self) -> None:
        super().__init__()
        self._count = f"SELECT count(*) FROM {self._schema}.invocations WHERE key = $1"

    def _row(self, event: Planned | Forwarded) -> tuple[str, str, int, int]:
        return (event.id, event.business or event.id, event.seq, self._pid)

    async def invoked(self, event: Planned | Forwarded) -> int:
        """Record the invocation and wait at the hold point; how many invocations its key has had."""
        assert self._pool is not None, "the container's effects_pool resource opens the pool"
        row = self._row(event)
        await self._pool.execute(self._invocation, *row)
        await self._hold.reach(event.id)
        return int(await self._pool.fetchval(self._count, row[1]))

    async def effect(self, event: Planned | Forwarded, connection: Any = None) -> None:
        assert self._pool is not None
        await (connection or self._pool).execute(self._effect, *self._row(event))

    @staticmethod
    def plan(event: Planned, invocations: int) -> None:
        """Raise as planned for this invocation of the event's business key."""
        if event.reject:
            raise RejectMessage(f"{event.id} rejected by plan")
        if event.fatal:
            raise Fatal(f"{event.id} is fatal by plan")
        if invocations <= event.fail:
            raise Transient(f"{event.id} fails transiently (invocation {invocations} of its key)")

    async def handle(self, event: Planned) -> None:
        invocations = await self.invoked(event)
        self.plan(event, invocations)
        await self.effect(event)

    async def handle_in(self, event: Planned, db: StoreTransaction) -> None:
        invocations = await self.invoked(event)
        await self.effect(event, db.connection)  # in the key's transaction: rolled back if the plan raises
        self.plan(event, invocations)

    async def forward(self, event: Planned) -> Forwarded:
        self.plan(event, await self.invoked(event))
        return Forwarded(
            id=event.id, key=event.key, seq=event.seq, business=event.business, pad="x" * event.big
        )


class KafkaEffects(Effects):
    @kafka_listener("set-by-config", id="effects_kafka")
    async def on_event(self, event: Planned, message: Message) -> None:
        _read_every_header(message)
        await self.handle(event)


class RabbitEffects(Effects):
    @rabbit_listener("set-by-config", id="effects_rabbit", ordering="none")
    async def on_event(self, event: Planned, message: Message) -> None:
        _read_every_header(message)
        await self.handle(event)


class KafkaKeyed(Effects):
    @kafka_listener("set-by-config", id="effects_kafka_keyed", idempotency_key="business")
    async def on_event(self, event: Planned) -> None:
        await self.handle(event)


class RabbitKeyed(Effects):
    @rabbit_listener("set-by-config", id="effects_rabbit_keyed", ordering="none", idempotency_key="business")
    async def on_event(self, event: Planned) -> None:
        await self.handle(event)


class KafkaTx(Effects):
    @kafka_listener(
        "set-by-config", id="effects_kafka_tx", idempotency_key="business", idempotency=TRANSACTIONAL
    )
    async def on_event(self, event: Planned, db: StoreTransaction) -> None:
        await self.handle_in(event, db)


class RabbitTx(Effects):
    @rabbit_listener(
        "set-by-config", id="effects_rabbit_tx", ordering="none", idempotency_key="business",
        idempotency=TRANSACTIONAL,
    )  # fmt: skip
    async def on_event(self, event: Planned, db: StoreTransaction) -> None:
        await self.handle_in(event, db)


FORWARD_TOPIC = os.environ.get(FORWARD_ENV, "effects-forward-unset")
"""Read at import, in the worker process: ``@send_to`` takes its destination when decorating."""


class KafkaForward(Effects):
    @kafka_listener("set-by-config", id="effects_kafka_forward")
    @send_to(topic=FORWARD_TOPIC)
    async def on_event(self, event: Planned) -> Forwarded:
        return await self.forward(event)


class RabbitForward(Effects):
    @rabbit_listener("set-by-config", id="effects_rabbit_forward", ordering="none")
    @send_to(topic=FORWARD_TOPIC)
    async def on_event(self, event: Planned) -> Forwarded:
        return await self.forward(event)


class Sink(Effects):
    @kafka_listener(FORWARD_TOPIC, id="effects_sink")
    async def on_forwarded(self, event: Forwarded) -> None:
        await self.effect(event)


def _read_every_header(message: Message) -> None:
    """What a handler reading headers does: each one as text and every value of repeated names."""
    for name in message.headers:
        message.headers.get_str(name)
        message.headers.get_all(name)


class HoldBeforeClaim:
    """An interceptor (outside the idempotency guard, which the invoker runs): holds a message at the
    ``FAULT_PRECLAIM_DIR`` barrier before its key is claimed."""

    def __init__(self) -> None:
        self._hold = HoldPoint(os.environ.get(PRECLAIM_ENV))

    async def __call__(self, message: Message, call_next: Handler) -> Outcome:
        found = message_id(message.body)
        if found is not None:
            await self._hold.reach(found)
        return await call_next(message)


class _Base(ListenersContainer):
    interceptors = providers.List(providers.Singleton(HoldBeforeClaim))


class KafkaContainer(_Base):
    effects = providers.Singleton(KafkaEffects)
    effects_pool = providers.Resource(opened, effects)


class RabbitContainer(_Base):
    effects = providers.Singleton(RabbitEffects)
    effects_pool = providers.Resource(opened, effects)


class KafkaKeyedContainer(_Base):
    effects = providers.Singleton(KafkaKeyed)
    effects_pool = providers.Resource(opened, effects)


class RabbitKeyedContainer(_Base):
    effects = providers.Singleton(RabbitKeyed)
    effects_pool = providers.Resource(opened, effects)


class KafkaTxContainer(_Base):
    effects = providers.Singleton(KafkaTx)
    effects_pool = providers.Resource(opened, effects)


class RabbitTxContainer(_Base):
    effects = providers.Singleton(RabbitTx)
    effects_pool = providers.Resource(opened, effects)


class KafkaForwardContainer(_Base):
    effects = providers.Singleton(KafkaForward)
    effects_pool = providers.Resource(opened, effects)
    sink = providers.Singleton(Sink)
    sink_pool = providers.Resource(opened, sink)


class RabbitForwardContainer(_Base):
    effects = providers.Singleton(RabbitForward)
    effects_pool = providers.Resource(opened, effects)
    sink = providers.Singleton(Sink)
    sink_pool = providers.Resource(opened, sink)


kafka_container = KafkaContainer()
rabbit_container = RabbitContainer()
kafka_keyed_container = KafkaKeyedContainer()
rabbit_keyed_container = RabbitKeyedContainer()
kafka_tx_container = KafkaTxContainer()
rabbit_tx_container = RabbitTxContainer()
kafka_forward_container = KafkaForwardContainer()
rabbit_forward_container = RabbitForwardContainer()


def planned_body(fields: dict[str, Any]) -> bytes:
    """A payload as the scenarios send it (``json.dumps`` of the plan)."""
    return json.dumps(fields).encode()
