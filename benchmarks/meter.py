"""Measuring one case: wall and process CPU time from the first handled message to the last, peak RSS."""

from __future__ import annotations

import asyncio
import resource
import time
from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class Measurement:
    """What one case run reports (one JSON line on stdout)."""

    case: str
    messages: int
    seconds: float
    msgs_per_s: float
    cpu_s_per_1000: float
    peak_rss_mb: float
    first_after_s: float
    config: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


class Meter:
    """Counts handled messages; the window runs from the first one to the ``target``-th one.

    Starting the window at the first handled message leaves the consumer-group join and the first fetch
    out, so both cases are timed over the same stretch of work. The rate counts the ``target - 1``
    messages handled after the window opened.
    """

    def __init__(self, target: int) -> None:
        if target < 2:
            raise ValueError("a rate needs at least 2 messages")
        self.target = target
        self.count = 0
        self.done = asyncio.Event()
        self._created = time.perf_counter()
        self._first = (0.0, 0.0)
        self._last = (0.0, 0.0)

    def tick(self) -> None:
        self.count += 1
        if self.count == 1:
            self._first = (time.perf_counter(), time.process_time())
        elif self.count == self.target:
            self._last = (time.perf_counter(), time.process_time())
            self.done.set()

    async def wait(self, timeout: float) -> None:
        try:
            await asyncio.wait_for(self.done.wait(), timeout)
        except TimeoutError:
            raise TimeoutError(f"only {self.count} of {self.target} messages within {timeout}s") from None

    def result(self, case: str, config: dict[str, Any]) -> Measurement:
        """The measurement; call after the case shut down, so peak RSS covers the whole run."""
        seconds = self._last[0] - self._first[0]
        cpu = self._last[1] - self._first[1]
        timed = self.target - 1
        return Measurement(
            case=case,
            messages=self.target,
            seconds=round(seconds, 4),
            msgs_per_s=round(timed / seconds, 1),
            cpu_s_per_1000=round(cpu / timed * 1000, 5),
            peak_rss_mb=round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            first_after_s=round(self._first[0] - self._created, 3),
            config=config,
        )
