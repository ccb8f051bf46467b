"""Batch listeners (Kafka): the records of one poll and partition as a list, committed after the handler."""

from __future__ import annotations

import asyncio

from pydantic import BaseModel

from listeners import ManualClock, Message, Retry
from tests.contract.configs import TransportConfig, unique

NO_JITTER = {"delay": 1.0, "multiplier": 2.0, "jitter": 0.0}


class Reading(BaseModel):
    sensor: str
    value: int


class BatchSuite(TransportConfig):
    async def test_batches_hold_one_partition_in_order_and_are_committed_after_the_handler(self) -> None:
        source = unique("readings")

        class Handlers:
            def __init__(self) -> None:
                self.batches: list[list[tuple[int | None, int | None, Reading]]] = []

            @self.listener(source, id="batches", batch=True)
            async def handle(self, readings: list[Reading], messages: list[Message]) -> None:
                assert len(readings) == len(messages)
                self.batches.append(
                    [(m.partition, m.offset, r) for m, r in zip(messages, readings, strict=True)]
                )

        first = Handlers()
        async with self.run(first) as app:
            for n in range(30):
                await self.publish(app, source, Reading(sensor=f"s{n % 3}", value=n), key=f"s{n % 3}")
            await app.wait_for(lambda: sum(len(b) for b in first.batches) == 30)
            assert app.stats("batches").processed == len(first.batches)
        for batch in first.batches:
            assert len({partition for partition, _, _ in batch}) == 1, "a batch holds one partition"
            offsets = [offset for _, offset, _ in batch]
            assert offsets == sorted(offsets)
        per_sensor: dict[str, list[int]] = {}
        for batch in first.batches:
            for _, _, reading in batch:
                per_sensor.setdefault(reading.sensor, []).append(reading.value)
        assert per_sensor == {f"s{k}": list(range(k, 30, 3)) for k in range(3)}
        second = Handlers()
        async with self.run(second) as app:
            await self.publish(app, source, Reading(sensor="s9", value=99), key="s9")
            await app.wait_for(lambda: sum(len(b) for b in second.batches) == 1)
        assert [r.value for b in second.batches for _, _, r in b] == [99], (
            "committed batches are not redelivered"
        )

    async def test_a_failing_batch_is_retried_whole_then_dead_lettered_record_by_record(self) -> None:
        source = unique("batch-fail")
        clock = ManualClock()
        entered = asyncio.Event()

        class Handlers:
            calls: list[int] = []

            @self.listener(source, id="failing_batch", batch=True, retry=Retry(attempts=2, backoff=NO_JITTER))
            async def handle(self, readings: list[Reading], message: Message) -> None:
                self.calls.append(len(readings))
                entered.set()
                raise RuntimeError(f"batch of {len(readings)} failed on attempt {message.attempt}")

        async with self.run(Handlers(), clock=clock, overrides=self.single_partition()) as app:
            for n in range(3):
                await self.publish(app, source, Reading(sensor="a", value=n), key="a")
            await entered.wait()
            await app.wait_for(lambda: clock.pending == 1)
            await clock.advance(1.0)
            dead = await self.wait_dead_letters(app, source, sum(Handlers.calls[:1]))
        assert Handlers.calls[0] == Handlers.calls[1], "the same batch is retried"
        assert sorted(Reading.model_validate_json(d.body).value for d in dead) == list(
            range(Handlers.calls[0])
        )
        self.check_dead_letter_headers(dead[0], source, RuntimeError, "failed on attempt 2")
