"""RabbitMQ test helpers: apps on the local broker, queue state."""

from __future__ import annotations

import subprocess

import aio_pika


async def queue_state(url: str, queue: str) -> tuple[int, int]:
    """(messages ready, consumers) of ``queue``, from a passive declare."""
    connection = await aio_pika.connect(url)
    try:
        channel = await connection.channel()
        declared = await channel.declare_queue(queue, passive=True)
        result = declared.declaration_result
        return int(result.message_count or 0), int(result.consumer_count or 0)
    finally:
        await connection.close()


def close_all_connections(reason: str) -> None:
    subprocess.run(["rabbitmqctl", "-q", "close_all_connections", reason], check=True, capture_output=True)
