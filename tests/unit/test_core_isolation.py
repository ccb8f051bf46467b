"""The core never needs aiokafka or aio-pika: an app on the embedded broker runs with both blocked."""

from __future__ import annotations

import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent(
    """
    import asyncio, importlib.abc, sys

    class Block(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in ("aiokafka", "aio_pika", "aiormq", "pamqp"):
                raise ImportError(f"blocked: {name}")
            return None

    sys.meta_path.insert(0, Block())

    from dependency_injector import providers
    import listeners, starter, listeners.memory, listeners.testing, listeners.cli.main
    from listeners import kafka_listener, rabbit_listener
    from listeners.testing import running

    class Handlers:
        seen = []

        @kafka_listener("iso-topic", id="k")
        async def on_kafka(self, text: str) -> None:
            self.seen.append(("kafka", text))

        @rabbit_listener("iso-queue", id="r")
        async def on_rabbit(self, text: str) -> None:
            self.seen.append(("rabbit", text))

    class Container(starter.ListenersContainer):
        handlers = providers.Singleton(Handlers)

    async def main():
        async with running(Container()) as app:
            await app.kafka.send("iso-topic", "a")
            await app.rabbit.publish("", "iso-queue", "b")
            await app.wait_for(lambda: len(Handlers.seen) == 2)
        loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("aiokafka", "aio_pika"))
        print("SEEN", sorted(Handlers.seen), "LOADED", loaded)

    asyncio.run(main())
    """
)


def test_core_runs_with_broker_clients_blocked() -> None:
    result = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "SEEN [('kafka', 'a'), ('rabbit', 'b')] LOADED []" in result.stdout
