"""Preparing and checking the data of a RabbitMQ case: a fresh queue, N messages in it, what is left.

None of this is measured. Queues are durable classic queues without arguments (what a
``@rabbit_listener`` declares by default), messages persistent JSON. Names are unique per run and
never look like the tests' names (which the tests' cleanup deletes).
``python -m benchmarks.rabbit_data --queue Q --messages N`` fills a queue by hand, e.g. to profile a case.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import shutil
import subprocess
import uuid
from collections.abc import Iterable

import aio_pika

from benchmarks.payload import payload
from tests.support.rabbit_tools import rabbit_url

PUBLISH_WINDOW = 1_000
"""Publishes awaited together while filling a queue: keeps the confirm pipeline full, bounded."""

DEAD_LETTER_SUFFIX = ".dlq"
"""What listeners appends to a queue's name for its dead-letter queue (declared by default)."""


def queue_name(suite: str, case: str) -> str:
    """``bench.<suite>.<case>.<12 hex>``: unique per run."""
    return f"bench.{suite}.{case}.{uuid.uuid4().hex[:12]}"


async def declare(url: str, queue: str) -> None:
    connection = await aio_pika.connect(url)
    async with connection:
        channel = await connection.channel()
        await channel.declare_queue(queue, durable=True)


async def fill(url: str, queue: str, messages: int) -> None:
    """Publish ``messages`` persistent JSON messages to ``queue``, confirmed, pipelined."""
    connection = await aio_pika.connect(url)
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        exchange = channel.default_exchange
        for start in range(0, messages, PUBLISH_WINDOW):
            await asyncio.gather(
                *(
                    exchange.publish(
                        aio_pika.Message(
                            payload(index)[1],
                            content_type="application/json",
                            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                        ),
                        routing_key=queue,
                    )
                    for index in range(start, min(start + PUBLISH_WINDOW, messages))
                )
            )


async def prepare(url: str, queue: str, messages: int) -> None:
    await declare(url, queue)
    await fill(url, queue, messages)


async def message_counts(url: str, queues: Iterable[str]) -> dict[str, int | None]:
    """Messages ready in each queue (a passive declare); None for a queue that does not exist.

    Deliveries a closed channel left unacknowledged are back in the queue by then, so 0 means every
    message was acknowledged.
    """
    counts: dict[str, int | None] = {}
    connection = await aio_pika.connect(url)
    async with connection:
        for queue in queues:
            channel = await connection.channel()  # a failed passive declare closes its channel
            try:
                declared = await channel.declare_queue(queue, passive=True)
            except aio_pika.exceptions.ChannelNotFoundEntity:
                counts[queue] = None
                continue
            counts[queue] = declared.declaration_result.message_count
            await channel.close()
    return counts


async def delete(url: str, queues: Iterable[str]) -> None:
    """Delete ``queues`` whatever they hold; a missing one is no error."""
    connection = await aio_pika.connect(url)
    async with connection:
        for queue in queues:
            channel = await connection.channel()
            with contextlib.suppress(aio_pika.exceptions.AMQPError):
                await channel.queue_delete(queue)
            if not channel.is_closed:
                await channel.close()


async def server_version(url: str) -> str:
    """The broker's version: ``rabbitmqctl version`` when it is here, else what the broker announces."""
    if shutil.which("rabbitmqctl"):
        result = await asyncio.to_thread(
            subprocess.run, ["rabbitmqctl", "version"], capture_output=True, text=True, check=False
        )
        if result.returncode == 0 and result.stdout.strip():
            return result.stdout.strip()
    connection = await aio_pika.connect(url)
    async with connection:
        underlay = connection.transport
        properties = underlay.connection.server_properties if underlay is not None else {}
        return str(properties.get("version", "unknown"))


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.rabbit_data", description=__doc__)
    parser.add_argument("--url", default=rabbit_url(), help="default: $LISTENERS_TEST_RABBIT_URL, else local")
    parser.add_argument("--queue", default=None, help="default: a new unique name")
    parser.add_argument("--messages", type=int, default=20_000)
    args = parser.parse_args()
    queue = args.queue or queue_name("manual", "fill")
    asyncio.run(prepare(args.url, queue, args.messages))
    print(f"{queue}: {args.messages} messages (delete it with rabbitmqctl delete_queue {queue})")


if __name__ == "__main__":
    main()


def describe_server(url: str) -> str:
    """``RabbitMQ <version> at <url without password>``; fails at once, naming it, if it is unreachable."""
    from listeners.rabbit.config import mask_url
    from tests.support.rabbit_tools import check_reachable

    check_reachable(url)
    return f"RabbitMQ {asyncio.run(server_version(url))} at {mask_url(url)}"
