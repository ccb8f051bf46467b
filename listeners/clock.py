"""Time as a seam: retries, delayed delivery and back-off wait on a :class:`Clock`.

Production uses :class:`SystemClock`. Tests and the embedded broker can use :class:`ManualClock`,
whose time only moves when :meth:`ManualClock.advance` is called, so retry flows run without waiting.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from typing import Protocol


class Clock(Protocol):
    """Wall time and sleeping, as used by retries and delayed delivery."""

    def time(self) -> float:
        """Seconds since the epoch."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Return once ``seconds`` have passed on this clock."""
        ...


class SystemClock:
    """The real clock."""

    def time(self) -> float:
        return time.time()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))


class ManualClock:
    """A clock that moves only when told to.

    ``sleep`` waits until :meth:`advance` has moved time past its deadline. Sleepers wake in deadline
    order, and ``advance`` yields to the event loop after each wake-up so the work it triggers runs
    before time moves on.
    """

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        # Deadlines are kept as elapsed seconds: at epoch magnitudes float steps are ~1e-7 s, which
        # would make 0.99 + 0.01 fall short of 1.0.
        self._start = start
        self._elapsed = 0.0
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._sequence = itertools.count()

    def time(self) -> float:
        return self._start + self._elapsed

    async def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self._elapsed + seconds, next(self._sequence), waiter))
        await waiter

    @property
    def pending(self) -> int:
        """How many sleepers are waiting (cancelled ones excluded)."""
        return sum(1 for _, _, waiter in self._sleepers if not waiter.done())

    def next_deadline(self) -> float | None:
        """The earliest time (as :meth:`time` reads) a sleeper is waiting for, if any."""
        live = [deadline for deadline, _, waiter in self._sleepers if not waiter.done()]
        return self._start + min(live) if live else None

    async def advance(self, seconds: float) -> None:
        """Move time forward by ``seconds``, waking every sleeper that falls due on the way."""
        target = self._elapsed + seconds
        while self._sleepers and self._sleepers[0][0] <= target + _TOLERANCE:
            deadline, _, waiter = heapq.heappop(self._sleepers)
            self._elapsed = max(self._elapsed, deadline)
            if not waiter.done():
                waiter.set_result(None)
                for _ in range(_YIELDS):
                    await asyncio.sleep(0)
        self._elapsed = max(self._elapsed, target)
        for _ in range(_YIELDS):
            await asyncio.sleep(0)


_TOLERANCE = 1e-9
"""Sleepers due within a nanosecond of the target wake: sums of decimal steps are inexact in binary."""
_YIELDS = 10
"""Event-loop turns given after each wake-up so the woken work settles before time moves on."""
