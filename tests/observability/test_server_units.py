"""The endpoint server's HTTP handling and the readiness rule, without an application."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

from listeners.server.endpoints import EndpointServer
from listeners.server.health import Readiness, readiness
from tests.observability.helpers import http_get


def listener(listener_id: str, state: str, consuming: bool | None) -> Any:
    subscription = None if consuming is None else SimpleNamespace(consuming=consuming)
    return SimpleNamespace(listener_id=listener_id, state=state, subscription=subscription)


def test_ready_only_once_started_and_while_every_started_listener_consumes() -> None:
    both = [listener("a", "running", True), listener("b", "running", True)]
    assert readiness(True, both) == Readiness(True)
    assert readiness(False, both).as_json() == {"status": "DOWN", "reason": "starting"}
    mixed = [listener("a", "running", False), listener("b", "stopping", True), listener("c", "created", None)]
    assert readiness(True, mixed).as_json() == {
        "status": "DOWN",
        "not_consuming": {"a": "not consuming", "b": "stopping"},
    }


async def test_a_malformed_request_is_answered_400_and_the_server_keeps_serving() -> None:
    server = EndpointServer(lambda: Readiness(True), None, "127.0.0.1", 0)
    await server.start()
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(b"NONSENSE\r\n\r\n")
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(), 10)
        writer.close()
        await writer.wait_closed()
        assert answer.startswith(b"HTTP/1.1 400 Bad Request\r\n")
        status, _, body = await http_get(server.port, "/health/ready?verbose=1")
        assert (status, body) == (200, b'{"status": "UP"}')
    finally:
        await server.close()


async def test_a_failing_route_answers_500_naming_the_error() -> None:
    def broken() -> Readiness:
        raise RuntimeError("no listeners yet")

    server = EndpointServer(broken, None, "127.0.0.1", 0)
    await server.start()
    try:
        status, _, body = await http_get(server.port, "/health/ready")
        assert (status, body) == (500, b"RuntimeError: no listeners yet\n")
    finally:
        await server.close()
