"""Reading metrics and fetching endpoints in observability tests."""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
from collections.abc import Awaitable, Callable
from typing import Any

from dependency_injector import providers
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from tests.support.apps import app_with


def metered(*handlers: Any, reader: InMemoryMetricReader) -> Any:
    """An app of ``handlers`` whose metrics go to ``reader`` (the container's meter_provider, as given)."""
    container = app_with(*handlers)
    container.meter_provider.override(providers.Object(MeterProvider(metric_readers=[reader])))
    return container


def points(reader: InMemoryMetricReader, name: str) -> list[Any]:
    """The data points of metric ``name`` collected now (observable callbacks run)."""
    data = reader.get_metrics_data()
    found: list[Any] = []
    if data is None:
        return found
    for resource in data.resource_metrics:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                if metric.name == name:
                    found.extend(metric.data.data_points)
    return found


def value(reader: InMemoryMetricReader, name: str, **attributes: Any) -> Any:
    """The value of the one point of ``name`` whose attributes include ``attributes`` (dots as ``__``);
    None if there is none."""
    wanted = {key.replace("__", "."): expected for key, expected in attributes.items()}
    matching = [
        point
        for point in points(reader, name)
        if all(dict(point.attributes).get(key) == expected for key, expected in wanted.items())
    ]
    assert len(matching) <= 1, f"{len(matching)} points of {name} match {wanted}"
    return matching[0].value if matching else None


async def eventually(condition: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
    """Poll ``condition`` until it holds; fail naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out after {timeout}s waiting for {what}"
        await asyncio.sleep(0.02)


async def eventually_async(
    condition: Callable[[], Awaitable[bool]], what: str, timeout: float = 20.0
) -> None:
    """:func:`eventually` for a condition that needs I/O."""
    deadline = time.monotonic() + timeout
    while not await condition():
        assert time.monotonic() < deadline, f"timed out after {timeout}s waiting for {what}"
        await asyncio.sleep(0.05)


async def http_get(port: int, path: str, method: str = "GET") -> tuple[int, dict[str, str], bytes]:
    """``(status, headers, body)`` of one request to 127.0.0.1:``port``."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(f"{method} {path} HTTP/1.1\r\nHost: localhost\r\n\r\n".encode())
        await writer.drain()
        raw = await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()
        await writer.wait_closed()
    head, _, body = raw.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in header_lines:
        name, _, text = line.partition(":")
        headers[name.strip().lower()] = text.strip()
    return int(status_line.split(" ")[1]), headers, body


async def ready(port: int) -> tuple[int, dict[str, Any]]:
    """``(status, JSON body)`` of ``/health/ready``."""
    status, _, body = await http_get(port, "/health/ready")
    return status, json.loads(body)


def close_connections_named(name: str, reason: str) -> int:
    """Close, from the broker side, the RabbitMQ connections whose client named them ``name`` (only
    this test's, unlike ``close_all_connections``); returns how many."""
    listed = subprocess.run(
        ["rabbitmqctl", "-q", "list_connections", "pid", "client_properties"],
        check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    pids = [
        line.split("\t", 1)[0] for line in listed.splitlines() if f'{{"connection_name","{name}"}}' in line
    ]
    for pid in pids:
        subprocess.run(
            ["rabbitmqctl", "-q", "close_connection", pid, reason], check=True, capture_output=True
        )
    return len(pids)
