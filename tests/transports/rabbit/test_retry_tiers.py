"""Non-blocking retries on RabbitMQ through delay-tier queues (``x-message-ttl`` + dead-letter exchange
back to the work queue): never early, attempts counted in ``retry-count``, original exchange and
routing key kept through the tiers into the dead-letter queue, source acked only after the tier
publish was confirmed."""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime
from typing import Any

import aio_pika
import pytest

from listeners import Message, RetryLater, rabbit_listener
from listeners.testing import running
from tests.contract.configs import unique
from tests.support.apps import app_with
from tests.support.rabbit_tools import take_all
from tests.transports.rabbit.helpers import queue_state

pytestmark = pytest.mark.rabbit


class Boom(Exception):
    pass


def non_blocking(attempts: int, delay: float, multiplier: float = 2.0) -> dict[str, Any]:
    return {
        "mode": "non-blocking",
        "attempts": attempts,
        "backoff": {"delay": delay, "multiplier": multiplier, "jitter": 0.5},
    }


def flaky(queue: str, retry: dict[str, Any], failures: int, **options: Any) -> Any:
    """A listener failing its first ``failures`` attempts; records (attempt, exchange, key, when)."""

    class Flaky:
        seen: list[tuple[int, str | None, str | None, float]] = []

        @rabbit_listener(queue, id="flaky", retry=retry, **options)
        async def handle(self, text: str, message: Message) -> None:
            self.seen.append((message.attempt, message.exchange, message.routing_key, time.monotonic()))
            if message.attempt <= failures:
                raise Boom(f"boom {message.attempt}")

    return Flaky()


def tier_arguments(queue: str, tier: int) -> dict[str, Any]:
    return {"x-message-ttl": tier, "x-dead-letter-exchange": "", "x-dead-letter-routing-key": queue}


async def test_a_failure_waits_in_its_tier_then_runs_again_never_early(
    rabbit: str, cleanup: list[str]
) -> None:
    queue, exchange = unique("tiered"), unique("x")
    cleanup.append(f"{queue}.retry.200")
    box = flaky(queue, non_blocking(attempts=2, delay=0.2), failures=1, exchange=exchange,
                routing_key="order.*")  # fmt: skip
    async with running(app_with(box=box), embedded=False, overrides={"listeners.rabbit.url": rabbit}) as app:
        await app.rabbit.publish(exchange, "order.created", "hello", headers={"trace": "t-1"})
        await app.wait_for(lambda: len(box.seen) == 2, timeout=10)
        await app.wait_for(lambda: app.stats("flaky").processed == 1, timeout=5)
        stats = app.stats("flaky")
        assert (stats.retried, stats.dead_lettered) == (1, 0)
    (first, exchange_1, key_1, failed_at), (second, exchange_2, key_2, retried_at) = box.seen
    assert (first, exchange_1, key_1) == (1, exchange, "order.created")
    assert (second, exchange_2, key_2) == (2, exchange, "order.created"), "original exchange and key"
    assert retried_at - failed_at >= 0.2, "a tier never releases a message early"
    assert await queue_state(rabbit, queue) == (0, 0)
    assert await queue_state(rabbit, f"{queue}.retry.200") == (0, 0)


async def test_exhausted_retries_reach_the_dead_letter_queue_with_the_original_origin(
    rabbit: str, cleanup: list[str]
) -> None:
    queue, exchange = unique("exhaust"), unique("x")
    cleanup.extend([f"{queue}.retry.100", f"{queue}.retry.200"])
    box = flaky(queue, non_blocking(attempts=3, delay=0.1), failures=99, exchange=exchange,
                routing_key="pay.*")  # fmt: skip
    async with running(app_with(box=box), embedded=False, overrides={"listeners.rabbit.url": rabbit}) as app:
        published_at = datetime.now(UTC).timestamp()
        await app.rabbit.publish(exchange, "pay.now", {"amount": 3}, headers={"keep": "me"})
        await app.wait_for(lambda: app.stats("flaky").dead_lettered == 1, timeout=10)
        dead_lettered_by = datetime.now(UTC).timestamp()
        stats = app.stats("flaky")
        assert stats.retried == 2
    assert [seen[:3] for seen in box.seen] == [(attempt, exchange, "pay.now") for attempt in (1, 2, 3)]
    times = [seen[3] for seen in box.seen]
    assert times[1] - times[0] >= 0.1
    assert times[2] - times[1] >= 0.2
    [dead] = await take_all(rabbit, f"{queue}.dlq")
    assert dead.body == b'{"amount":3}'
    assert dead.content_type == "application/json"
    assert dead.timestamp is not None, "stamped with the dead-letter time (listeners dlt --since)"
    assert published_at - 1 <= dead.timestamp.timestamp() <= dead_lettered_by + 1, "whole seconds in AMQP"
    headers = dead.headers
    assert headers["retry-count"] == "3"
    assert headers["x-original-exchange"] == exchange
    assert headers["x-original-routingKey"] == "pay.now"
    assert headers["x-exception-message"] == "boom 3"
    assert headers["keep"] == "me"
    assert await queue_state(rabbit, queue) == (0, 0)


async def test_tier_queues_are_declared_with_ttl_and_dead_letter_to_the_work_queue(
    rabbit: str, cleanup: list[str]
) -> None:
    queue = unique("declared")
    tiers = (1000, 2000, 4000)
    cleanup.extend(f"{queue}.retry.{tier}" for tier in tiers)
    box = flaky(queue, non_blocking(attempts=4, delay=1.0), failures=0, queue_type="quorum")
    async with running(app_with(box=box), embedded=False, overrides={"listeners.rabbit.url": rabbit}):
        pass
    connection = await aio_pika.connect(rabbit)
    try:
        for tier in tiers:
            name = f"{queue}.retry.{tier}"
            # Redeclaring with the same arguments is accepted; with others the broker refuses.
            channel = await connection.channel()
            await channel.declare_queue(name, durable=True, arguments=tier_arguments(queue, tier))
            with pytest.raises(aio_pika.exceptions.ChannelPreconditionFailed):
                await channel.declare_queue(name, durable=True, arguments=tier_arguments(queue, tier + 1))
        channel = await connection.channel()
        with pytest.raises(aio_pika.exceptions.ChannelNotFoundEntity):
            await channel.declare_queue(f"{queue}.retry.8000", passive=True)
    finally:
        await connection.close()


async def test_retry_later_waits_in_a_tier_of_exactly_the_delay_asked_for(
    rabbit: str, cleanup: list[str]
) -> None:
    queue = unique("later")
    cleanup.extend([f"{queue}.retry.100", f"{queue}.retry.300"])

    class Later:
        seen: list[tuple[int, float]] = []

        @rabbit_listener(queue, id="later", retry=non_blocking(attempts=2, delay=0.1))
        async def handle(self, text: str, message: Message) -> None:
            self.seen.append((message.attempt, time.monotonic()))
            if message.attempt == 1:
                raise RetryLater("not yet", delay=0.3)

    box = Later()
    async with running(app_with(box=box), embedded=False, overrides={"listeners.rabbit.url": rabbit}) as app:
        await app.rabbit.publish("", queue, "x")
        await app.wait_for(lambda: len(box.seen) == 2, timeout=10)
    (first, failed_at), (second, retried_at) = box.seen
    assert (first, second) == (1, 2)
    assert retried_at - failed_at >= 0.3
    connection = await aio_pika.connect(rabbit)
    try:
        channel = await connection.channel()
        with pytest.raises(aio_pika.exceptions.ChannelPreconditionFailed):  # it exists, with TTL 300
            await channel.declare_queue(f"{queue}.retry.300", durable=True)
    finally:
        await connection.close()


async def test_a_retry_publish_that_fails_leaves_the_source_unacknowledged(
    rabbit: str, cleanup: list[str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="listeners")
    queue = unique("unsettled")
    tier = f"{queue}.retry.300"
    cleanup.extend([f"{queue}.retry.100", tier])
    connection = await aio_pika.connect(rabbit)
    try:  # a queue of the tier's name with other arguments: declaring the tier on demand fails
        await (await connection.channel()).declare_queue(tier, durable=True, arguments={"x-max-length": 5})
    finally:
        await connection.close()

    class Later:
        seen: list[int] = []

        @rabbit_listener(queue, id="later", retry=non_blocking(attempts=2, delay=0.1))
        async def handle(self, text: str, message: Message) -> None:
            self.seen.append(message.attempt)
            if message.attempt == 1:
                raise RetryLater("not yet", delay=0.3)

    overrides = {"listeners.rabbit.url": rabbit}
    box = Later()
    async with running(app_with(box=box), embedded=False, overrides=overrides) as app:
        await app.rabbit.publish("", queue, "keep me")
        await app.wait_for(lambda: "could not settle" in caplog.text, timeout=10)
    # Stopped while the retry publish was failing: the source was never acked, so it is back.
    assert await queue_state(rabbit, queue) == (1, 0)
    assert await queue_state(rabbit, tier) == (0, 0)
    assert box.seen == [1]

    connection = await aio_pika.connect(rabbit)
    try:
        await (await connection.channel()).queue_delete(tier)
    finally:
        await connection.close()
    async with running(app_with(box=box), embedded=False, overrides=overrides) as app:
        await app.wait_for(lambda: box.seen == [1, 1, 2], timeout=10)
    assert await queue_state(rabbit, queue) == (0, 0)


async def test_a_deleted_tier_queue_is_declared_again_and_nothing_is_lost(
    rabbit: str, cleanup: list[str]
) -> None:
    queue = unique("redeclare")
    tier = f"{queue}.retry.100"
    cleanup.append(tier)
    box = flaky(queue, non_blocking(attempts=2, delay=0.1), failures=1)
    async with running(app_with(box=box), embedded=False, overrides={"listeners.rabbit.url": rabbit}) as app:
        connection = await aio_pika.connect(rabbit)
        try:
            await (await connection.channel()).queue_delete(tier)
        finally:
            await connection.close()
        await app.rabbit.publish("", queue, "x")
        await app.wait_for(lambda: app.stats("flaky").processed == 1, timeout=10)
    assert [seen[0] for seen in box.seen] == [1, 2]
