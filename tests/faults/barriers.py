"""Barriers between a test and the handlers of its worker processes, through files in one directory.

A handler calls :meth:`HoldPoint.reach` at its hold point (in the fault apps: after recording the
invocation, before the effect). While the directory's ``hold`` file exists the handler appends
``<pid> <message id>`` to ``held`` and waits there until the file is gone. What the file holds says
which messages wait: nothing (every message), a number ``N`` (each process lets its first ``N``
messages pass and holds the later ones), or message ids, one a line (those messages). The test side
(:class:`Barrier`) creates and deletes the file and waits, with a deadline, for handlers to be held.

Holding by id is deterministic where counting is not: handlers reach the point in the order their
earlier awaits finish, not in delivery order, so "after N" may hold a message while a later one
passes.

Waiting is polling with a deadline (:func:`until`), never a bare sleep.
"""

from __future__ import annotations

import asyncio
import inspect
import os
import time
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
from typing import Any

BARRIER_ENV = "FAULT_BARRIER_DIR"
POLL = 0.02


class HoldPoint:
    """The handler side, in the worker process (``FAULT_BARRIER_DIR`` names the directory)."""

    def __init__(self, directory: str | Path | None) -> None:
        self._directory = Path(directory) if directory else None
        self._passed = 0  # messages of this process that reached the point

    async def reach(self, message_id: str) -> None:
        """Pass, or wait while held (the wait is cancelled with the handler)."""
        if self._directory is None:
            return
        hold, held = self._directory / "hold", self._directory / "held"
        self._passed += 1
        if not _holds(hold, self._passed, message_id):
            return
        with held.open("a") as out:
            out.write(f"{os.getpid()} {message_id}\n")
        # Another process deletes the file: polling is the only way to see it.
        while hold.exists():  # noqa: ASYNC110
            await asyncio.sleep(POLL)


def _holds(hold: Path, reached: int, message_id: str) -> bool:
    try:
        text = hold.read_text().strip()
    except FileNotFoundError:
        return False
    if not text:
        return True
    if text.isdigit():
        return reached > int(text)
    return message_id in text.split()


class Barrier:
    """The test side: hold handlers, see which are held, release them."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)

    def env(self) -> dict[str, str]:
        return {BARRIER_ENV: str(self.directory)}

    def hold(self, after: int = 0, ids: Iterable[str] | None = None) -> None:
        """Hold the handlers of ``ids``, or else every handler that reaches the point after the first
        ``after`` of each process."""
        if ids is not None:
            text = "\n".join(ids)
            if not text or text.isdigit():
                raise ValueError("hold(ids=...) takes message ids, not a count")
        else:
            text = str(after) if after else ""
        (self.directory / "hold").write_text(text)

    def release(self) -> None:
        """Let held handlers (and every later one) go on."""
        (self.directory / "hold").unlink(missing_ok=True)

    def held(self, pid: int | None = None) -> list[str]:
        """Message ids held so far (by process ``pid``), in the order they were held."""
        path = self.directory / "held"
        lines = path.read_text().splitlines() if path.exists() else []
        return [line.split()[1] for line in lines if pid is None or line.split()[0] == str(pid)]

    async def wait_held(
        self,
        count: int,
        *,
        pid: int | None = None,
        timeout: float = 30,
        alive: Callable[[], Any] | None = None,
    ) -> list[str]:
        """Wait until ``count`` handlers (of ``pid``) are held; returns their message ids."""
        await until(lambda: len(self.held(pid)) >= count, timeout, f"{count} handler(s) held", alive=alive)
        return self.held(pid)


async def until(
    condition: Callable[[], bool | Awaitable[bool]],
    timeout: float,
    what: str,
    *,
    alive: Callable[[], Any] | None = None,
) -> None:
    """Poll ``condition`` (sync or async) until it holds; fail after ``timeout`` seconds saying ``what``.

    ``alive`` is called on every poll and may raise (a worker that exited fails the wait at once).
    """
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return
        if alive is not None:
            alive()
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(POLL)
