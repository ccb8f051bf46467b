"""Non-blocking retries on the embedded broker's RabbitMQ face: delay-tier queues whose TTL, on the
broker's clock, dead-letters the message back to the work queue; exhausted messages go to the DLQ."""

from __future__ import annotations

from typing import Any

import pytest

from listeners import ManualClock, Message, RetryLater, StartupError, rabbit_listener
from listeners.memory import MemoryBroker
from listeners.testing import running
from tests.contract.configs import unique
from tests.support.apps import app_with


class Boom(Exception):
    pass


def non_blocking(attempts: int, delay: float = 0.2, multiplier: float = 2.0) -> dict[str, Any]:
    return {
        "mode": "non-blocking",
        "attempts": attempts,
        "backoff": {"delay": delay, "multiplier": multiplier, "jitter": 0.5},
    }


def flaky(queue: str, retry: dict[str, Any], failures: int, **options: Any) -> Any:
    """A listener that fails its first ``failures`` attempts, recording what each attempt saw."""

    class Flaky:
        seen: list[tuple[int, str | None, str | None]] = []

        @rabbit_listener(queue, id="flaky", retry=retry, **options)
        async def handle(self, text: str, message: Message) -> None:
            self.seen.append((message.attempt, message.exchange, message.routing_key))
            if message.attempt <= failures:
                raise Boom(f"boom {message.attempt}")

    return Flaky()


async def test_a_failure_waits_in_its_tier_for_exactly_the_delay_then_runs_again() -> None:
    queue, exchange = unique("tiered"), unique("x")
    clock = ManualClock()
    box = flaky(queue, non_blocking(attempts=2), failures=1, exchange=exchange, routing_key="order.*")
    async with running(app_with(broker=MemoryBroker(clock), box=box), clock=clock) as app:
        await app.rabbit.publish(exchange, "order.created", "hello", headers={"trace": b"\x00\xff"})
        await app.wait_for(lambda: clock.pending == 1, message="the tier's TTL timer")
        [waiting] = app.queue(f"{queue}.retry.200")
        assert app.queue(queue) == []
        assert app.broker.amqp.queues[queue].consumers[0].unacked == {}, "source acknowledged"
        assert waiting.body == b"hello"
        assert dict(waiting.headers) == {
            "trace": b"\x00\xff",
            "retry-count": b"1",
            "x-original-exchange": exchange.encode(),
            "x-original-routingKey": b"order.created",
            "x-exception-message": b"boom 1",
            "x-exception-fqcn": f"{Boom.__module__}.Boom".encode(),
            "listeners-retry-started": str(int(clock.time() * 1000)).encode(),
        }
        assert waiting.headers[0] == ("trace", b"\x00\xff"), "original headers first, byte for byte"

        await clock.advance(0.199)
        assert box.seen == [(1, exchange, "order.created")], "not before the delay"
        await clock.advance(0.001)
        await app.wait_for(lambda: len(box.seen) == 2)
        assert box.seen[1] == (2, exchange, "order.created"), "attempt 2, original exchange and key"
        await app.wait_for(lambda: app.stats("flaky").processed == 1)
        stats = app.stats("flaky")
        assert (stats.retried, stats.dead_lettered) == (1, 0)
        assert app.queue(f"{queue}.retry.200") == []


async def test_exhausted_retries_go_through_every_tier_to_the_dead_letter_queue() -> None:
    queue, exchange = unique("exhaust"), unique("x")
    clock = ManualClock()
    box = flaky(queue, non_blocking(attempts=3), failures=99, exchange=exchange, routing_key="pay.*")
    async with running(app_with(broker=MemoryBroker(clock), box=box), clock=clock) as app:
        await app.rabbit.publish(exchange, "pay.now", {"amount": 3}, headers={"keep": "me"})
        await app.wait_for(lambda: clock.pending == 1)
        await clock.advance(0.2)
        await app.wait_for(lambda: len(box.seen) == 2 and clock.pending == 1)
        assert app.queue(f"{queue}.retry.400"), "second retry waits in the 400 ms tier"
        await clock.advance(0.399)
        assert len(box.seen) == 2
        await clock.advance(0.001)
        await app.wait_for(lambda: len(app.queue(f"{queue}.dlq")) == 1)
        [dead] = app.queue(f"{queue}.dlq")
        stats = app.stats("flaky")
        assert (stats.retried, stats.dead_lettered) == (2, 1)
    assert box.seen == [(attempt, exchange, "pay.now") for attempt in (1, 2, 3)]
    assert dead.body == b'{"amount":3}'
    assert dead.content_type == "application/json"
    headers = dict(dead.headers)
    assert headers["retry-count"] == b"3"
    assert headers["x-original-exchange"] == exchange.encode()
    assert headers["x-original-routingKey"] == b"pay.now"
    assert headers["x-exception-message"] == b"boom 3"
    assert headers["keep"] == b"me"
    assert [name for name, _ in dead.headers].count("retry-count") == 1


async def test_tier_queues_are_declared_with_ttl_and_dead_letter_arguments() -> None:
    queue = unique("declared")
    box = flaky(queue, non_blocking(attempts=4, delay=1.0), failures=0)
    broker = MemoryBroker()
    async with running(app_with(broker=broker, box=box)):
        pass
    for tier in (1000, 2000, 4000):
        declared = broker.amqp.queues[f"{queue}.retry.{tier}"]
        assert declared.arguments == {
            "x-message-ttl": tier,
            "x-dead-letter-exchange": "",
            "x-dead-letter-routing-key": queue,
        }
    assert f"{queue}.retry.8000" not in broker.amqp.queues


async def test_blocking_listeners_get_no_tiers_and_declare_false_checks_them() -> None:
    queue = unique("blocking")
    broker = MemoryBroker()
    async with running(app_with(broker=broker, box=flaky(queue, {"attempts": 3}, failures=0))):
        pass
    assert [name for name in broker.amqp.queues if ".retry." in name] == []

    checked = unique("checked")
    broker.amqp.declare_queue(checked)
    box = flaky(checked, non_blocking(attempts=2), failures=0, declare=False)
    with pytest.raises(StartupError, match=rf"queue '{checked}.retry.200' does not exist"):
        async with running(app_with(broker=broker, box=box)):
            pass


async def test_retry_later_waits_in_a_tier_of_exactly_the_delay_the_handler_asked_for() -> None:
    queue = unique("later")
    clock = ManualClock()

    class Later:
        attempts: list[int] = []

        @rabbit_listener(queue, id="later", retry=non_blocking(attempts=3))
        async def handle(self, text: str, message: Message) -> None:
            self.attempts.append(message.attempt)
            if message.attempt == 1:
                raise RetryLater("not yet", delay=0.3)

    box = Later()
    async with running(app_with(broker=MemoryBroker(clock), box=box), clock=clock) as app:
        assert f"{queue}.retry.300" not in app.broker.amqp.queues
        await app.rabbit.publish("", queue, "x")
        await app.wait_for(lambda: clock.pending == 1)
        assert len(app.queue(f"{queue}.retry.300")) == 1
        assert app.broker.amqp.queues[f"{queue}.retry.300"].arguments == {
            "x-message-ttl": 300,
            "x-dead-letter-exchange": "",
            "x-dead-letter-routing-key": queue,
        }
        await clock.advance(0.299)
        assert box.attempts == [1]
        await clock.advance(0.001)
        await app.wait_for(lambda: box.attempts == [1, 2])


async def test_a_failing_retry_publish_leaves_the_source_unacknowledged_until_it_succeeds() -> None:
    queue = unique("unsettled")
    clock = ManualClock()
    broker = MemoryBroker(clock)
    tier = f"{queue}.retry.200"
    box = flaky(queue, non_blocking(attempts=2), failures=1)
    async with running(app_with(broker=broker, box=box), clock=clock) as app:
        del broker.amqp.queues[tier]
        broker.amqp.declare_queue(tier, {"x-max-length": 1})  # clashes with the tier's arguments
        await app.rabbit.publish("", queue, "keep me")
        await app.wait_for(lambda: clock.pending == 1, message="the settle back-off")
        consumer = broker.amqp.queues[queue].consumers[0]
        assert len(consumer.unacked) == 1, "source not acknowledged while the retry publish fails"
        assert app.queue(tier) == []

        del broker.amqp.queues[tier]  # fixed: the next settle attempt declares the tier
        await clock.advance(0.6)  # past the settle back-off (0.5 s +-10%), short of its TTL after it
        await app.wait_for(lambda: len(app.queue(tier)) == 1 and consumer.unacked == {})
        await app.wait_for(lambda: clock.pending == 1)
        await clock.advance(0.2)
        await app.wait_for(lambda: app.stats("flaky").processed == 1)
    assert [attempt for attempt, _, _ in box.seen] == [1, 2]


async def test_a_malformed_retry_count_is_a_first_attempt() -> None:
    queue = unique("malformed")
    box = flaky(queue, non_blocking(attempts=2), failures=0)
    async with running(app_with(broker=MemoryBroker(), box=box)) as app:
        await app.rabbit.publish("", queue, "a", headers={"retry-count": "many"})
        await app.rabbit.publish("", queue, "b", headers={"retry-count": "4", "x-original-exchange": "orig"})
        await app.wait_for(lambda: len(box.seen) == 2)
    assert box.seen == [(1, "", queue), (5, "orig", queue)]
