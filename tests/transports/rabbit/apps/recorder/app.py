"""A listeners app for process-level RabbitMQ tests: records handled values, optionally holding them.

Env: LISTENERS__RABBIT__URL, LISTENERS__LISTENER__RECORDER__QUEUE, RECORDER_FILE, RECORDER_HOLD (seconds
each handler waits before finishing).
"""

from __future__ import annotations

import asyncio
import os

from dependency_injector import providers

from listeners import Message, rabbit_listener
from starter import ListenersContainer


class Recorder:
    def __init__(self) -> None:
        self._file = open(os.environ["RECORDER_FILE"], "a", buffering=1)  # noqa: SIM115 - lives with the app
        self._hold = float(os.environ.get("RECORDER_HOLD", "0"))

    @rabbit_listener("set-by-config", id="recorder", ordering="none", prefetch=20)
    async def handle(self, value: str, message: Message) -> None:
        self._file.write(f"start {value}\n")
        await asyncio.sleep(self._hold)
        self._file.write(f"done {value}\n")


class Container(ListenersContainer):
    recorder = providers.Singleton(Recorder)


container = Container()
