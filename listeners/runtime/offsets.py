"""Contiguous completed offsets: what a log-based transport may commit for one partition.

Records finish out of order when lanes run concurrently. The committable position is one past the
highest offset such that it and every offset handed out before it are finished, never the consumer's
fetch position.
"""

from __future__ import annotations

from collections import deque


class PartitionOffsets:
    """Offsets handed out for one partition, and the position that is safe to commit."""

    __slots__ = ("_done", "_started", "committable")

    def __init__(self, position: int) -> None:
        self._started: deque[int] = deque()
        self._done: set[int] = set()
        self.committable = position
        """Position (next offset to read) that everything before has finished."""

    def start(self, offset: int) -> None:
        """Record that ``offset`` was handed to the listener. Offsets must be started in order."""
        if self._started and offset <= self._started[-1]:
            raise ValueError(f"offset {offset} started out of order after {self._started[-1]}")
        if offset < self.committable:
            raise ValueError(f"offset {offset} is before the committable position {self.committable}")
        if not self._started:
            # Skipped offsets (compaction, control records) need no completion of their own.
            self.committable = max(self.committable, offset)
        self._started.append(offset)

    def start_run(self, offsets: list[int]) -> None:
        """:meth:`start` for increasing ``offsets`` of one fetch (the broker returns a partition's records
        in order, so only the run's ends are checked)."""
        if not offsets:
            return
        if offsets[-1] < offsets[0]:
            raise ValueError(f"offsets {offsets[0]}..{offsets[-1]} started out of order")
        self.start(offsets[0])
        self._started.extend(offsets[1:])

    def finish(self, offset: int) -> bool:
        """Record that ``offset`` is finished; True if :attr:`committable` moved."""
        started = self._started
        if not self._done and started and started[0] == offset:  # in order, the usual case
            started.popleft()
            self.committable = offset + 1
            return True
        self._done.add(offset)
        moved = False
        while self._started and self._started[0] in self._done:
            finished = self._started.popleft()
            self._done.discard(finished)
            self.committable = finished + 1
            moved = True
        return moved

    def finished_after(self, offset: int) -> bool:
        """Whether an offset after ``offset`` finished while ``offset`` (or one before it) has not."""
        return any(done > offset for done in self._done)

    @property
    def in_flight(self) -> int:
        """How many started offsets are not yet committable."""
        return len(self._started)
