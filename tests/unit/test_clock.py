"""Clocks: the manual clock that moves only when advanced, and the system clock."""

from __future__ import annotations

import asyncio
import time

import pytest

from listeners.clock import Clock, ManualClock, SystemClock

START = 1_000.0
NOT_DONE = 0.05  # grace period to show a sleeper is still waiting; never used to wait for progress


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(start=START)


async def still_sleeping(task: asyncio.Task[object]) -> bool:
    done, _ = await asyncio.wait({task}, timeout=NOT_DONE)
    return not done


async def sleeper(clock: ManualClock, seconds: float, woke: list[tuple[float, float]]) -> None:
    await clock.sleep(seconds)
    woke.append((seconds, clock.time()))


async def started(clock: ManualClock, *tasks: asyncio.Task[None]) -> None:
    """Wait until every task is registered as a sleeper (event-loop turns only, no wall time)."""
    for _ in range(100):
        if clock.pending == len(tasks):
            return
        await asyncio.sleep(0)
    raise AssertionError(f"{len(tasks)} sleepers expected, {clock.pending} pending")


def test_manual_clock_starts_at_the_given_time() -> None:
    assert ManualClock(start=42.5).time() == 42.5


def test_manual_clock_default_start_is_a_plausible_epoch() -> None:
    assert ManualClock().time() > 1_600_000_000


def test_both_clocks_satisfy_the_protocol() -> None:
    clocks: list[Clock] = [ManualClock(), SystemClock()]

    assert all(isinstance(c.time(), float) for c in clocks)


async def test_time_moves_only_when_advanced(clock: ManualClock) -> None:
    assert clock.time() == START
    await asyncio.sleep(0)
    assert clock.time() == START

    await clock.advance(2.5)
    assert clock.time() == START + 2.5

    await clock.advance(0.5)
    assert clock.time() == START + 3.0


async def test_sleep_returns_only_once_time_reaches_the_deadline(clock: ManualClock) -> None:
    woke: list[tuple[float, float]] = []
    task = asyncio.create_task(sleeper(clock, 5.0, woke))
    await started(clock, task)

    await clock.advance(4.9)
    assert await still_sleeping(task)

    await clock.advance(0.1)
    await asyncio.wait_for(task, timeout=5)
    assert woke == [(5.0, START + 5.0)]


async def test_sleepers_wake_in_deadline_order_at_their_own_deadline(clock: ManualClock) -> None:
    woke: list[tuple[float, float]] = []
    tasks = [asyncio.create_task(sleeper(clock, seconds, woke)) for seconds in (3.0, 1.0, 2.0)]
    await started(clock, *tasks)

    await clock.advance(10.0)

    assert woke == [(1.0, START + 1.0), (2.0, START + 2.0), (3.0, START + 3.0)]
    assert clock.time() == START + 10.0
    await asyncio.wait_for(asyncio.gather(*tasks), timeout=5)


async def test_sleepers_with_equal_deadlines_wake_in_the_order_they_slept(clock: ManualClock) -> None:
    order: list[str] = []

    async def named(name: str) -> None:
        await clock.sleep(1.0)
        order.append(name)

    tasks = [asyncio.create_task(named(name)) for name in ("a", "b", "c")]
    await started(clock, *tasks)

    await clock.advance(1.0)

    assert order == ["a", "b", "c"]


async def test_work_triggered_by_a_wake_up_runs_before_time_moves_on(clock: ManualClock) -> None:
    seen: list[float] = []

    async def ticker() -> None:
        for _ in range(3):
            await clock.sleep(1.0)
            seen.append(clock.time())

    task = asyncio.create_task(ticker())
    await started(clock, task)

    await clock.advance(10.0)

    assert seen == [START + 1.0, START + 2.0, START + 3.0]
    await asyncio.wait_for(task, timeout=5)


async def test_a_sleep_is_measured_from_the_time_it_starts(clock: ManualClock) -> None:
    await clock.advance(100.0)
    task = asyncio.create_task(clock.sleep(5.0))
    await started(clock, task)

    assert clock.next_deadline() == START + 105.0
    await clock.advance(4.0)
    assert await still_sleeping(task)
    await clock.advance(1.0)
    await asyncio.wait_for(task, timeout=5)


@pytest.mark.parametrize("seconds", [0.0, -1.0])
async def test_zero_or_negative_sleep_returns_without_advancing(clock: ManualClock, seconds: float) -> None:
    await asyncio.wait_for(clock.sleep(seconds), timeout=5)

    assert clock.pending == 0
    assert clock.time() == START


async def test_pending_counts_waiting_sleepers(clock: ManualClock) -> None:
    assert clock.pending == 0
    tasks = [asyncio.create_task(clock.sleep(seconds)) for seconds in (1.0, 2.0)]
    await started(clock, *tasks)
    assert clock.pending == 2

    await clock.advance(1.0)
    assert clock.pending == 1

    await clock.advance(1.0)
    assert clock.pending == 0
    await asyncio.wait_for(asyncio.gather(*tasks), timeout=5)


async def test_cancelled_sleepers_are_not_pending_and_not_woken(clock: ManualClock) -> None:
    woke: list[tuple[float, float]] = []
    cancelled = asyncio.create_task(sleeper(clock, 1.0, woke))
    kept = asyncio.create_task(sleeper(clock, 2.0, woke))
    await started(clock, cancelled, kept)

    cancelled.cancel()
    with pytest.raises(asyncio.CancelledError):
        await cancelled

    assert clock.pending == 1
    assert clock.next_deadline() == START + 2.0

    await clock.advance(5.0)
    assert woke == [(2.0, START + 2.0)]
    assert clock.pending == 0


async def test_next_deadline_is_the_earliest_waiting_deadline(clock: ManualClock) -> None:
    assert clock.next_deadline() is None
    tasks = [asyncio.create_task(clock.sleep(seconds)) for seconds in (7.0, 3.0, 5.0)]
    await started(clock, *tasks)

    assert clock.next_deadline() == START + 3.0
    await clock.advance(3.0)
    assert clock.next_deadline() == START + 5.0
    await clock.advance(10.0)
    assert clock.next_deadline() is None
    await asyncio.wait_for(asyncio.gather(*tasks), timeout=5)


async def test_advance_by_zero_neither_moves_time_nor_wakes_future_sleepers(clock: ManualClock) -> None:
    task = asyncio.create_task(clock.sleep(0.001))
    await started(clock, task)

    await clock.advance(0.0)

    assert clock.time() == START
    assert await still_sleeping(task)
    await clock.advance(0.001)
    await asyncio.wait_for(task, timeout=5)


# SystemClock ------------------------------------------------------------------------------------------


def test_system_clock_time_is_wall_time(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(time, "time", lambda: 1234.5)

    assert SystemClock().time() == 1234.5


@pytest.mark.parametrize("seconds", [0.0, -5.0])
async def test_system_clock_zero_or_negative_sleep_returns(seconds: float) -> None:
    await asyncio.wait_for(SystemClock().sleep(seconds), timeout=5)


async def test_system_clock_sleep_yields_to_other_tasks() -> None:
    ran: list[str] = []

    async def other() -> None:
        ran.append("other")

    task = asyncio.create_task(other())
    await SystemClock().sleep(0)

    assert ran == ["other"]
    await task
