"""RabbitMQ helpers for tests: the run's broker URL, reading a queue, cleaning up what tests declared."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
from urllib.parse import urlsplit

import aio_pika
from aio_pika.abc import AbstractIncomingMessage

RABBIT_ENV = "LISTENERS_TEST_RABBIT_URL"
DEFAULT_URL = "amqp://guest:guest@127.0.0.1:5672/"
TEST_NAME = re.compile(r"-[0-9a-f]{10}(\.dlq)?$")


def rabbit_url() -> str:
    return os.environ.get(RABBIT_ENV, DEFAULT_URL)


def check_reachable(url: str) -> None:
    """Fail (never skip) with how to get a broker when RabbitMQ is not there."""
    import socket

    parts = urlsplit(url)
    with socket.socket() as probe:
        probe.settimeout(2)
        if probe.connect_ex((parts.hostname or "127.0.0.1", parts.port or 5672)) != 0:
            raise RuntimeError(
                f"RabbitMQ is not reachable at {parts.hostname}:{parts.port or 5672}: start it with "
                f"'rabbitmq-server -detached' (or scripts/services.sh), or set {RABBIT_ENV}"
            )


async def take_all(url: str, queue: str) -> list[AbstractIncomingMessage]:
    """Remove and return every message waiting in ``queue`` (none if it does not exist)."""
    connection = await aio_pika.connect(url)
    try:
        channel = await connection.channel()
        try:
            declared = await channel.declare_queue(queue, passive=True)
        except aio_pika.exceptions.ChannelNotFoundEntity:
            return []
        taken = []
        while (message := await declared.get(no_ack=True, fail=False)) is not None:
            taken.append(message)
        return taken
    finally:
        await connection.close()


async def delete_test_entities(url: str) -> None:
    """Delete queues and exchanges named like the tests' unique names (rabbitmqctl lists them)."""
    if shutil.which("rabbitmqctl") is None:
        return
    listed = {}
    for what in ("queues", "exchanges"):
        result = await asyncio.to_thread(
            subprocess.run, ["rabbitmqctl", "-q", f"list_{what}", "name"], capture_output=True, text=True
        )
        listed[what] = [name for name in result.stdout.split() if TEST_NAME.search(name)]
    connection = await aio_pika.connect(url)
    try:
        channel = await connection.channel()
        for name in listed["queues"]:
            await channel.queue_delete(name)
        for name in listed["exchanges"]:
            await channel.exchange_delete(name)
    finally:
        await connection.close()
