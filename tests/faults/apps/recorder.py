"""The fault scenarios' app: handlers that record each invocation and each effect in PostgreSQL.

A handler inserts ``(id, key, seq, pid)`` into ``<schema>.invocations``, reaches the barrier's hold
point (it may wait there, see :mod:`tests.faults.barriers`), then inserts the same into
``<schema>.effects``: the message's effect, which the oracle counts. Plain at-least-once listeners,
without idempotency.

Two containers, one per transport, so a worker connects only to the broker its scenario uses:
``kafka_container`` (listener ``fault_kafka``) and ``rabbit_container`` (listener ``fault_rabbit``).

Env: ``FAULT_PG_DSN``, ``FAULT_PG_SCHEMA``, ``FAULT_BARRIER_DIR`` (optional), and the listener's
source: ``LISTENERS__LISTENER__FAULT_KAFKA__TOPICS`` (JSON list) and ``..._GROUP_ID``, or
``LISTENERS__LISTENER__FAULT_RABBIT__QUEUE``; plus the brokers' ``LISTENERS__KAFKA__*`` /
``LISTENERS__RABBIT__URL``.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator

import asyncpg
from dependency_injector import providers
from pydantic import BaseModel

from listeners import kafka_listener, rabbit_listener
from starter import ListenersContainer
from tests.faults.barriers import BARRIER_ENV, HoldPoint


class Event(BaseModel):
    id: str
    key: str
    seq: int


class Recorder:
    def __init__(self) -> None:
        self._dsn = os.environ["FAULT_PG_DSN"]
        schema = os.environ["FAULT_PG_SCHEMA"]
        if not schema.isidentifier():
            raise ValueError(f"FAULT_PG_SCHEMA {schema!r} is not a plain identifier")
        self._schema = schema
        self._invocation = f"INSERT INTO {schema}.invocations (id, key, seq, pid) VALUES ($1, $2, $3, $4)"
        self._effect = f"INSERT INTO {schema}.effects (id, key, seq, pid) VALUES ($1, $2, $3, $4)"
        self._hold = HoldPoint(os.environ.get(BARRIER_ENV))
        self._pool: asyncpg.Pool | None = None
        self._pid = os.getpid()

    async def open(self) -> None:
        self._pool = await asyncpg.create_pool(self._dsn, min_size=2, max_size=12)

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()

    async def record(self, event: Event) -> None:
        assert self._pool is not None, "the container's recorder_pool resource opens the pool"
        row = (event.id, event.key, event.seq, self._pid)
        await self._pool.execute(self._invocation, *row)
        await self._hold.reach(event.id)
        await self._pool.execute(self._effect, *row)


class KafkaRecorder(Recorder):
    @kafka_listener("set-by-config", id="fault_kafka")
    async def handle(self, event: Event) -> None:
        await self.record(event)


class RabbitRecorder(Recorder):
    @rabbit_listener("set-by-config", id="fault_rabbit", ordering="none")
    async def handle(self, event: Event) -> None:
        await self.record(event)


async def opened(recorder: Recorder) -> AsyncIterator[Recorder]:
    """The recorder's pool, open before the listeners start and closed after they stopped."""
    await recorder.open()
    yield recorder
    await recorder.close()


class KafkaContainer(ListenersContainer):
    recorder = providers.Singleton(KafkaRecorder)
    recorder_pool = providers.Resource(opened, recorder)


class RabbitContainer(ListenersContainer):
    recorder = providers.Singleton(RabbitRecorder)
    recorder_pool = providers.Resource(opened, recorder)


kafka_container = KafkaContainer()
rabbit_container = RabbitContainer()
