"""A minimal HTTP/1.1 server on asyncio streams: one GET or HEAD per connection, then close.

Enough for Kubernetes probes and Prometheus scrapes. Requests are bounded (a request head of at most
``MAX_HEAD`` bytes, read within ``READ_TIMEOUT``); anything else is answered 400, 405 or 404.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

log = logging.getLogger("listeners.server")

MAX_HEAD = 16 * 1024
READ_TIMEOUT = 5.0
REASONS = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


@dataclass(frozen=True)
class Response:
    """What a route answers."""

    status: int
    body: bytes = b""
    content_type: str = "text/plain; charset=utf-8"
    headers: dict[str, str] = field(default_factory=dict)


Route = Callable[[], Awaitable[Response]]


class HttpServer:
    """Serves ``routes`` (``{path: route}``) on ``host``:``port`` (0: any free port) until closed."""

    def __init__(self, routes: dict[str, Route], host: str, port: int) -> None:
        self._routes = routes
        self._host = host
        self._port = port
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()

    @property
    def port(self) -> int:
        """The port it listens on (the one picked, if 0 was asked for)."""
        assert self._server is not None, "start() first"
        return int(self._server.sockets[0].getsockname()[1])

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, self._host, self._port)

    async def close(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        for task in list(self._connections):
            task.cancel()
        await asyncio.gather(*self._connections, return_exceptions=True)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(server.wait_closed(), READ_TIMEOUT)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._connections.add(task)
        try:
            method, path = await self._request(reader)
            response = await self._respond(method, path)
            writer.write(_encode(response, head_only=method == "HEAD"))
            await asyncio.wait_for(writer.drain(), READ_TIMEOUT)
        except (_BadRequest, TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            with contextlib.suppress(Exception):
                writer.write(_encode(Response(400, b"bad request\n"), head_only=False))
                await asyncio.wait_for(writer.drain(), READ_TIMEOUT)
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            if task is not None:
                self._connections.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(writer.wait_closed(), READ_TIMEOUT)

    async def _request(self, reader: asyncio.StreamReader) -> tuple[str, str]:
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), READ_TIMEOUT)
        if len(head) > MAX_HEAD:
            raise _BadRequest
        request_line = head.split(b"\r\n", 1)[0].decode("latin-1")
        parts = request_line.split(" ")
        if len(parts) != 3 or not parts[2].startswith("HTTP/"):
            raise _BadRequest
        method, target = parts[0], parts[1]
        return method, target.split("?", 1)[0]

    async def _respond(self, method: str, path: str) -> Response:
        route = self._routes.get(path.rstrip("/") or "/")
        if route is None:
            return Response(404, b"not found\n")
        if method not in ("GET", "HEAD"):
            return Response(405, b"method not allowed\n", headers={"Allow": "GET, HEAD"})
        try:
            return await route()
        except Exception as error:
            log.error("GET %s failed: %s: %s", path, type(error).__name__, error, exc_info=error)
            return Response(500, f"{type(error).__name__}: {error}\n".encode())


class _BadRequest(Exception):
    pass


def _encode(response: Response, *, head_only: bool) -> bytes:
    reason = REASONS.get(response.status, "")
    lines = [
        f"HTTP/1.1 {response.status} {reason}",
        f"Content-Type: {response.content_type}",
        f"Content-Length: {len(response.body)}",
        "Cache-Control: no-store",
        "Connection: close",
        *(f"{name}: {value}" for name, value in response.headers.items()),
    ]
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    return head if head_only else head + response.body
