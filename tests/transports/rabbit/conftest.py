"""Fixtures of the RabbitMQ transport tests."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aio_pika
import pytest


@pytest.fixture
async def cleanup(rabbit: str) -> AsyncIterator[list[str]]:
    """Queue names to delete after the test: delay-tier and delayed-publish queues are not named like
    the tests' unique names, which the run's cleanup knows."""
    names: list[str] = []
    yield names
    connection = await aio_pika.connect(rabbit)
    try:
        channel = await connection.channel()
        for name in names:
            await channel.queue_delete(name)
    finally:
        await connection.close()
