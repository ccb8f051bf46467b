"""A listeners app for process-level Kafka tests: records every handled value to a file.

Configured by env: LISTENERS__KAFKA__BOOTSTRAP_SERVERS, LISTENERS__LISTENER__RECORDER__TOPICS,
LISTENERS__LISTENER__RECORDER__GROUP_ID and RECORDER_FILE (appended, one value per line, flushed).
"""

from __future__ import annotations

import asyncio
import os

from dependency_injector import providers

from listeners import Message, kafka_listener
from starter import ListenersContainer


class Recorder:
    def __init__(self) -> None:
        self._file = open(os.environ["RECORDER_FILE"], "a", buffering=1)  # noqa: SIM115 - lives with the app
        self._pause = float(os.environ.get("RECORDER_PAUSE", "0.002"))

    @kafka_listener("set-by-config", id="recorder")
    async def handle(self, value: str, message: Message) -> None:
        await asyncio.sleep(self._pause)
        self._file.write(f"{value} {message.partition} {message.offset}\n")


class Container(ListenersContainer):
    recorder = providers.Singleton(Recorder)


container = Container()
