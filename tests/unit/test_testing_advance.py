"""TestApp.advance: settles the app, moves its ManualClock, wakes what falls due on the way, settles again."""

from __future__ import annotations

import pytest

from listeners import ManualClock, Message, Retry, kafka_listener
from listeners.memory import MemoryBroker
from listeners.testing import running
from tests.contract.configs import unique
from tests.support.apps import app_with

FIXED_ONE_SECOND = {"delay": 1.0, "multiplier": 1.0, "jitter": 0.0}


class Flaky(Exception):
    pass


async def test_advance_on_an_app_without_a_manual_clock_fails_clearly() -> None:
    async with running(app_with()) as app:
        with pytest.raises(TypeError, match=r"advance needs the app to run on a ManualClock.*SystemClock"):
            await app.advance(1.0)


async def test_advance_refuses_to_move_time_backwards() -> None:
    async with running(app_with(), clock=ManualClock()) as app:
        with pytest.raises(ValueError, match="backwards"):
            await app.advance(-1.0)


async def test_advance_moves_the_clock_by_exactly_the_given_time() -> None:
    clock = ManualClock()
    async with running(app_with(), clock=clock) as app:
        start = clock.time()
        for _ in range(10):
            await app.advance(0.1)
        assert clock.time() == pytest.approx(start + 1.0, abs=1e-9)


async def test_advance_needs_no_waiting_and_runs_chained_retries_at_their_own_times() -> None:
    topic = unique("chain")
    clock = ManualClock()
    times: list[float] = []

    class Handlers:
        @kafka_listener(topic, id="chain", retry=Retry(attempts=3, backoff=FIXED_ONE_SECOND))
        async def handle(self, text: str, message: Message) -> None:
            times.append(clock.time())
            if message.attempt < 3:
                raise Flaky("again")

    broker = MemoryBroker(clock, partitions=1)
    async with running(app_with(Handlers(), broker=broker), clock=clock) as app:
        start = clock.time()
        await app.kafka.send(topic, "c-1")
        # No wait for the handler or for clock.pending: advance settles the app first. One call runs
        # the first retry at +1 s, whose failure then sleeps until +2 s, within the same advance.
        await app.advance(2.5)
        assert [round(t - start, 3) for t in times] == [0.0, 1.0, 2.0]
        assert app.stats("chain").processed == 1
        assert clock.time() == pytest.approx(start + 2.5, abs=1e-9)


async def test_settle_returns_once_a_sent_record_is_handled() -> None:
    topic = unique("settle")
    handled: list[str] = []

    class Handlers:
        @kafka_listener(topic, id="settle")
        async def handle(self, text: str) -> None:
            handled.append(text)

    async with running(app_with(Handlers(), broker=MemoryBroker(partitions=1))) as app:
        for n in range(20):
            await app.kafka.send(topic, str(n))
        await app.settle()
        assert handled == [str(n) for n in range(20)]
