"""The fault proxy against a local echo server: what passes, what is held, what is closed."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator

import pytest

from tests.faults.barriers import until
from tests.faults.proxy import FaultProxy

pytestmark = pytest.mark.fault


class Echo:
    """A TCP echo server in the test's loop that counts the bytes it received."""

    def __init__(self) -> None:
        self.port = 0
        self.received = 0


@pytest.fixture
async def echo() -> AsyncIterator[Echo]:
    server_state = Echo()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                server_state.received += len(data)
                writer.write(data)
                await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass  # reset by a test, or the loop ends
        finally:
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    server_state.port = server.sockets[0].getsockname()[1]
    yield server_state
    server.close()


@pytest.fixture
def proxy(echo: Echo) -> Iterator[FaultProxy]:
    with FaultProxy("127.0.0.1", echo.port) as running:
        yield running


async def connect(proxy: FaultProxy) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection(proxy.host, proxy.port)


async def round_trip(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, data: bytes) -> bytes:
    writer.write(data)
    await writer.drain()
    return await asyncio.wait_for(reader.readexactly(len(data)), 5)


async def refused(proxy: FaultProxy) -> bool:
    """True when a new connection is reset or closed at once (the connect itself may see the reset)."""
    try:
        reader, writer = await connect(proxy)
    except ConnectionError:
        return True
    try:
        return await closed(reader)
    finally:
        writer.close()


async def closed(reader: asyncio.StreamReader) -> bool:
    """True when the peer closed or reset the connection (read gives EOF or a reset)."""
    try:
        return await asyncio.wait_for(reader.read(1), 5) == b""
    except ConnectionError:
        return True


async def test_bytes_pass_both_ways(proxy: FaultProxy) -> None:
    reader, writer = await connect(proxy)
    assert await round_trip(reader, writer, b"hello") == b"hello"
    big = bytes(range(256)) * 4096  # 1 MiB: many chunks, backpressure on both legs
    assert await round_trip(reader, writer, big) == big
    assert proxy.connections == 1
    writer.close()


async def test_stall_holds_bytes_both_ways_then_releases_them_in_order(proxy: FaultProxy) -> None:
    reader, writer = await connect(proxy)
    assert await round_trip(reader, writer, b"warm") == b"warm"
    proxy.stall()
    writer.write(b"held-1 ")
    writer.write(b"held-2")
    await writer.drain()
    with pytest.raises(TimeoutError):  # the absence of bytes can only be observed for a while
        await asyncio.wait_for(reader.readexactly(1), 0.5)
    assert proxy.connections == 1, "the sockets stay open while stalled"
    proxy.pass_through()
    assert await asyncio.wait_for(reader.readexactly(13), 5) == b"held-1 held-2"
    writer.close()


async def test_stall_holds_the_reply_of_a_request_already_forwarded(proxy: FaultProxy, echo: Echo) -> None:
    reader, writer = await connect(proxy)
    proxy.latency(0.5)  # each way: the request arrives, the reply waits in the proxy
    writer.write(b"ping")
    await writer.drain()
    await until(lambda: echo.received == 4, 5, "the request at the echo server")
    proxy.stall()  # during the reply's delay
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(reader.readexactly(4), 1.0)
    proxy.pass_through()
    assert await asyncio.wait_for(reader.readexactly(4), 5) == b"ping"
    writer.close()


async def test_latency_delays_each_chunk(proxy: FaultProxy) -> None:
    reader, writer = await connect(proxy)
    proxy.latency(0.2)
    started = time.monotonic()
    assert await round_trip(reader, writer, b"slow") == b"slow"
    assert time.monotonic() - started >= 0.4, "0.2 s each way"
    proxy.pass_through()
    assert await round_trip(reader, writer, b"fast") == b"fast"
    writer.close()


async def test_refuse_closes_new_connections_and_keeps_current_ones(proxy: FaultProxy) -> None:
    reader, writer = await connect(proxy)
    proxy.wait_connections(1)  # connected through: a connection the proxy has not served yet is new
    proxy.refuse()
    assert await refused(proxy), "a new connection is closed at once"
    assert await round_trip(reader, writer, b"still") == b"still"
    proxy.pass_through()
    again_reader, again_writer = await connect(proxy)
    assert await round_trip(again_reader, again_writer, b"back") == b"back"
    writer.close()
    again_writer.close()


async def test_reset_all_closes_current_connections_and_accepts_new_ones(proxy: FaultProxy) -> None:
    first = await connect(proxy)
    second = await connect(proxy)
    for reader, writer in (first, second):
        assert await round_trip(reader, writer, b"x") == b"x"
    assert proxy.reset_all() == 2
    assert await closed(first[0])
    assert await closed(second[0])
    assert proxy.connections == 0
    reader, writer = await connect(proxy)
    assert await round_trip(reader, writer, b"new") == b"new"
    writer.close()


async def test_reset_all_while_stalled_closes_the_held_connection(proxy: FaultProxy) -> None:
    reader, writer = await connect(proxy)
    proxy.wait_connections(1)
    proxy.stall()
    writer.write(b"never")
    await writer.drain()
    assert proxy.reset_all() == 1
    assert await closed(reader)
    proxy.pass_through()
    writer.close()
