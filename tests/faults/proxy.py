"""A TCP proxy for fault injection, with faults switched while connections are open.

The proxy runs its own event loop in a daemon thread, so a test can use it from async code (its
loop is never blocked by the proxy, nor the proxy by the test polling a subprocess) and from sync
code alike. Every mode switch returns once it is in effect in the proxy's loop.

Modes:

- ``pass_through()``: bytes flow both ways (the default);
- ``latency(seconds)``: each chunk read waits ``seconds`` before it is forwarded (both ways);
- ``stall()``: nothing is forwarded either way, every socket stays open; bytes read meanwhile wait
  in the proxy (the rest in the kernel buffers) and flow again, in order, on ``pass_through()``;
- ``refuse()``: new connections are accepted and closed at once with a reset (current ones go on);
- ``reset_all()``: every current connection is reset (RST) on both sides, whatever the mode.

Usage::

    with FaultProxy("127.0.0.1", 5672) as proxy:      # listens on 127.0.0.1:<free port>
        url = f"amqp://guest:guest@{proxy.address}/"
        ...
        proxy.stall(); ...; proxy.pass_through()
        proxy.reset_all()
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import threading
import time
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

Mode = Literal["pass", "stall", "refuse"]
CHUNK = 65536
T = TypeVar("T")


@dataclass(eq=False)
class _Connection:
    client: asyncio.StreamWriter
    upstream: asyncio.StreamWriter
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def reset(self) -> None:
        for writer in (self.client, self.upstream):
            _reset(writer)
        for task in self.tasks:
            task.cancel()


class FaultProxy:
    """Forwards connections from a free loopback port to ``target_host:target_port``."""

    def __init__(self, target_host: str, target_port: int, *, host: str = "127.0.0.1") -> None:
        self.target_host = target_host
        self.target_port = target_port
        self.host = host
        self.port = 0
        self.mode: Mode = "pass"
        self.delay = 0.0
        self.accepted = 0
        """Connections accepted so far (refused ones included)."""
        self._connections: set[_Connection] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.Server | None = None
        self._flowing: asyncio.Event | None = None

    # lifecycle ------------------------------------------------------------------------------------

    @property
    def address(self) -> str:
        """``host:port`` to point clients at."""
        return f"{self.host}:{self.port}"

    def start(self) -> FaultProxy:
        loop = asyncio.new_event_loop()
        self._loop = loop
        self._thread = threading.Thread(target=loop.run_forever, name=f"fault-proxy-{self.target_port}")
        self._thread.daemon = True
        self._thread.start()
        self._call(self._listen())
        return self

    def close(self) -> None:
        """Stop listening, reset every connection and stop the proxy's thread."""
        if self._loop is None:
            return
        self._call(self._shutdown())
        self._loop.call_soon_threadsafe(self._loop.stop)
        assert self._thread is not None
        self._thread.join(5)
        self._loop.close()
        self._loop = None

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # faults ---------------------------------------------------------------------------------------

    def pass_through(self) -> None:
        """Forward everything at once again (ends ``stall``, ``refuse`` and ``latency``)."""
        self._switch("pass", 0.0)

    def latency(self, seconds: float) -> None:
        """Forward each chunk ``seconds`` after it was read, both ways."""
        self._switch("pass", seconds)

    def stall(self) -> None:
        """Forward nothing either way; keep every socket open."""
        self._switch("stall", self.delay)

    def refuse(self) -> None:
        """Reset new connections as soon as they are accepted."""
        self._switch("refuse", self.delay)

    def reset_all(self) -> int:
        """Reset every current connection on both sides; returns how many there were."""
        return self._call(self._reset_all())

    @property
    def connections(self) -> int:
        """Connections currently forwarded."""
        return self._call(self._count())

    def wait_connections(self, count: int, timeout: float = 5.0) -> None:
        """Wait until at least ``count`` connections are forwarded (a client's connect returns before
        the proxy has connected upstream)."""
        deadline = time.monotonic() + timeout
        while self.connections < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.connections} connection(s) through the proxy, not {count}")
            time.sleep(0.01)

    # in the proxy's loop --------------------------------------------------------------------------

    def _call(self, coroutine: Coroutine[Any, Any, T]) -> T:
        assert self._loop is not None, "start() first"
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(10)

    def _switch(self, mode: Mode, delay: float) -> None:
        self._call(self._set(mode, delay))

    async def _set(self, mode: Mode, delay: float) -> None:
        self.mode, self.delay = mode, delay
        assert self._flowing is not None
        if mode == "stall":
            self._flowing.clear()
        else:
            self._flowing.set()

    async def _count(self) -> int:
        return len(self._connections)

    async def _listen(self) -> None:
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._server = await asyncio.start_server(self._serve, self.host, 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _shutdown(self) -> None:
        if self._server is not None:
            self._server.close()
        await self._reset_all()
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2)

    async def _reset_all(self) -> int:
        connections = list(self._connections)
        self._connections.clear()
        for connection in connections:
            connection.reset()
        for connection in connections:
            await asyncio.gather(*connection.tasks, return_exceptions=True)
        return len(connections)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        if self.mode == "refuse":
            _reset(writer)
            return
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(
                self.target_host, self.target_port
            )
        except OSError:
            _reset(writer)
            return
        connection = _Connection(writer, upstream_writer)
        connection.tasks = [
            asyncio.ensure_future(self._pump(reader, upstream_writer)),
            asyncio.ensure_future(self._pump(upstream_reader, writer)),
        ]
        self._connections.add(connection)
        try:
            # Either side closing (or failing) ends the connection on both.
            await asyncio.wait(connection.tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            if connection in self._connections:
                self._connections.discard(connection)
                for task in connection.tasks:
                    task.cancel()
                await asyncio.gather(*connection.tasks, return_exceptions=True)
                for side in (writer, upstream_writer):
                    with contextlib.suppress(Exception):
                        side.close()

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        flowing = self._flowing
        assert flowing is not None
        with contextlib.suppress(ConnectionError, OSError):
            while chunk := await reader.read(CHUNK):
                if self.delay > 0:
                    await asyncio.sleep(self.delay)
                while not flowing.is_set():  # a stall may start during the delay
                    await flowing.wait()
                writer.write(chunk)
                await writer.drain()


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with SO_LINGER 0: the peer sees a reset (RST), not an orderly close."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()
