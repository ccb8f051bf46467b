"""The embedded broker's AMQP side: topic matching, exchange routing and queue consumers."""

from __future__ import annotations

import asyncio

import pytest

from listeners.exceptions import TransportError, UnroutableError
from listeners.memory.amqp import DEFAULT_EXCHANGE, AmqpMessage, MemoryAmqp, topic_matches

BLOCKED = 0.05  # long enough to show that a get() is waiting; never used to wait for progress


def message(exchange: str, routing_key: str, body: bytes = b"x") -> AmqpMessage:
    return AmqpMessage(body=body, headers=(), exchange=exchange, routing_key=routing_key, timestamp=0.0)


async def is_blocked(awaitable: asyncio.Future[object]) -> bool:
    """True if ``awaitable`` does not complete within a short grace period (it is left running)."""
    done, _ = await asyncio.wait({awaitable}, timeout=BLOCKED)
    return not done


# topic_matches ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "routing_key"),
    [
        ("orders.created", "orders.created"),
        ("orders.*", "orders.created"),
        ("*.created", "orders.created"),
        ("*.*", "a.b"),
        ("#", "orders"),
        ("#", "orders.created.eu"),
        ("#.eu", "orders.created.eu"),
        ("#.eu", "eu"),
        ("orders.#", "orders.created.eu"),
        ("orders.#", "orders"),
        ("orders.#.eu", "orders.created.eu"),
        ("orders.#.eu", "orders.eu"),
        ("orders.#.eu", "orders.a.b.c.eu"),
        ("*.#", "orders"),
        ("#.*", "orders.created"),
        ("#.#", "a.b.c"),
        ("orders.*.#", "orders.created"),
    ],
)
def test_topic_pattern_matches(pattern: str, routing_key: str) -> None:
    assert topic_matches(pattern, routing_key)


@pytest.mark.parametrize(
    ("pattern", "routing_key"),
    [
        ("orders.created", "orders.deleted"),
        ("orders.created", "orders.created.eu"),
        ("orders.created", "orders"),
        ("orders.*", "orders"),
        ("orders.*", "orders.created.eu"),
        ("*", "orders.created"),
        ("*.created", "created"),
        ("#.eu", "orders.us"),
        ("#.eu", "eu.orders"),
        ("orders.#", "order.created"),
        ("orders.#.eu", "orders.created.us"),
        ("orders.#.eu", "eu"),
        ("orders.*.#", "orders"),
        ("Orders.created", "orders.created"),
    ],
)
def test_topic_pattern_does_not_match(pattern: str, routing_key: str) -> None:
    assert not topic_matches(pattern, routing_key)


def test_star_matches_exactly_one_whole_word_not_a_prefix() -> None:
    assert not topic_matches("ord*.created", "orders.created")
    assert topic_matches("ord*.created", "ord*.created")


# routing ----------------------------------------------------------------------------------------------


def test_default_exchange_routes_by_queue_name() -> None:
    broker = MemoryAmqp()
    broker.declare_queue("work")

    assert broker.route(message(DEFAULT_EXCHANGE, "work")) == ["work"]
    assert broker.publish(message(DEFAULT_EXCHANGE, "work", b"job")) == 1
    assert [m.body for m in broker.queues["work"].messages] == [b"job"]


def test_default_exchange_with_an_unknown_queue_is_unroutable() -> None:
    broker = MemoryAmqp()

    with pytest.raises(UnroutableError, match="reached no queue"):
        broker.publish(message(DEFAULT_EXCHANGE, "missing"))


def test_direct_exchange_routes_by_exact_key() -> None:
    broker = MemoryAmqp()
    broker.declare_exchange("direct-x", "direct")
    broker.bind("created", "direct-x", "orders.created")
    broker.bind("all", "direct-x", "orders.created")
    broker.bind("deleted", "direct-x", "orders.deleted")

    assert broker.route(message("direct-x", "orders.created")) == ["created", "all"]
    assert broker.route(message("direct-x", "orders.deleted")) == ["deleted"]
    with pytest.raises(UnroutableError):
        broker.route(message("direct-x", "orders.*"))


def test_topic_exchange_routes_by_pattern() -> None:
    broker = MemoryAmqp()
    broker.declare_exchange("events", "topic")
    broker.bind("eu", "events", "*.*.eu")
    broker.bind("orders", "events", "orders.#")
    broker.bind("everything", "events", "#")

    assert broker.route(message("events", "orders.created.eu")) == ["eu", "orders", "everything"]
    assert broker.route(message("events", "users.created")) == ["everything"]


def test_fanout_exchange_ignores_the_routing_key() -> None:
    broker = MemoryAmqp()
    broker.declare_exchange("broadcast", "fanout")
    broker.bind("a", "broadcast", "")
    broker.bind("b", "broadcast", "ignored")

    assert broker.route(message("broadcast", "anything.at.all")) == ["a", "b"]


def test_publish_delivers_a_copy_to_every_routed_queue() -> None:
    broker = MemoryAmqp()
    broker.declare_exchange("broadcast", "fanout")
    broker.bind("a", "broadcast", "")
    broker.bind("b", "broadcast", "")

    assert broker.publish(message("broadcast", "", b"hello")) == 2
    assert [m.body for m in broker.queues["a"].messages] == [b"hello"]
    assert [m.body for m in broker.queues["b"].messages] == [b"hello"]


def test_a_queue_matched_by_several_bindings_gets_one_copy() -> None:
    broker = MemoryAmqp()
    broker.declare_exchange("events", "topic")
    broker.bind("q", "events", "orders.*")
    broker.bind("q", "events", "#")

    assert broker.publish(message("events", "orders.created")) == 1
    assert len(broker.queues["q"].messages) == 1


def test_binding_the_same_key_twice_is_one_binding() -> None:
    broker = MemoryAmqp()
    broker.declare_exchange("direct-x", "direct")
    broker.bind("q", "direct-x", "k")
    broker.bind("q", "direct-x", "k")

    assert broker.route(message("direct-x", "k")) == ["q"]
    assert broker.publish(message("direct-x", "k")) == 1


def test_binding_declares_the_queue() -> None:
    broker = MemoryAmqp()
    broker.declare_exchange("x", "direct")

    broker.bind("new-queue", "x", "k")

    assert "new-queue" in broker.queues


def test_publishing_to_an_unknown_exchange_raises_a_transport_error() -> None:
    broker = MemoryAmqp()

    with pytest.raises(TransportError, match="no exchange 'nowhere'") as raised:
        broker.publish(message("nowhere", "k"))

    assert not isinstance(raised.value, UnroutableError)


def test_binding_to_an_unknown_exchange_raises() -> None:
    with pytest.raises(TransportError, match="no exchange 'nowhere'"):
        MemoryAmqp().bind("q", "nowhere", "k")


def test_unroutable_publish_raises_and_names_exchange_and_key() -> None:
    broker = MemoryAmqp()
    broker.declare_exchange("events", "topic")
    broker.bind("q", "events", "orders.*")

    with pytest.raises(UnroutableError, match=r"'events'.*'users\.created'"):
        broker.publish(message("events", "users.created"))
    assert not broker.queues["q"].messages


def test_check_routable_raises_what_publish_would_without_enqueueing() -> None:
    broker = MemoryAmqp()
    broker.declare_queue("q")

    broker.check_routable(message(DEFAULT_EXCHANGE, "q"))
    assert not broker.queues["q"].messages
    with pytest.raises(UnroutableError):
        broker.check_routable(message(DEFAULT_EXCHANGE, "other"))


def test_redeclaring_an_exchange_with_the_same_type_is_allowed_and_keeps_bindings() -> None:
    broker = MemoryAmqp()
    broker.declare_exchange("x", "topic")
    broker.bind("q", "x", "#")

    broker.declare_exchange("x", "topic")

    assert broker.route(message("x", "a.b")) == ["q"]


def test_redeclaring_an_exchange_with_another_type_raises() -> None:
    broker = MemoryAmqp()
    broker.declare_exchange("x", "topic")

    with pytest.raises(TransportError, match="exists with type 'topic'"):
        broker.declare_exchange("x", "fanout")


def test_headers_exchanges_are_not_supported() -> None:
    with pytest.raises(TransportError, match="headers"):
        MemoryAmqp().declare_exchange("h", "headers")


# consumers --------------------------------------------------------------------------------------------


def queue_with(broker: MemoryAmqp, name: str, *bodies: bytes) -> None:
    broker.declare_queue(name)
    for body in bodies:
        broker.publish(message(DEFAULT_EXCHANGE, name, body))


async def test_get_returns_messages_in_fifo_order_with_increasing_tags() -> None:
    broker = MemoryAmqp()
    queue_with(broker, "q", b"1", b"2", b"3")
    consumer = broker.consume("q", prefetch=10)

    received = [await consumer.get() for _ in range(3)]

    assert [m.body for _, m in received] == [b"1", b"2", b"3"]
    tags = [tag for tag, _ in received]
    assert tags == sorted(tags)
    assert len(set(tags)) == 3
    assert not any(m.redelivered for _, m in received)


async def test_get_waits_for_a_message_to_be_published() -> None:
    broker = MemoryAmqp()
    broker.declare_queue("q")
    consumer = broker.consume("q", prefetch=1)
    pending = asyncio.ensure_future(consumer.get())

    assert await is_blocked(pending)
    broker.publish(message(DEFAULT_EXCHANGE, "q", b"late"))

    _, received = await asyncio.wait_for(pending, timeout=5)
    assert received.body == b"late"


async def test_prefetch_bounds_unacknowledged_messages_until_an_ack() -> None:
    broker = MemoryAmqp()
    queue_with(broker, "q", b"1", b"2", b"3")
    consumer = broker.consume("q", prefetch=2)
    first_tag, _ = await consumer.get()
    await consumer.get()

    third = asyncio.ensure_future(consumer.get())
    assert await is_blocked(third)
    assert len(broker.queues["q"].messages) == 1

    assert consumer.ack(first_tag) is True
    _, received = await asyncio.wait_for(third, timeout=5)
    assert received.body == b"3"
    assert len(consumer.unacked) == 2


async def test_ack_of_an_unknown_or_settled_tag_returns_false() -> None:
    broker = MemoryAmqp()
    queue_with(broker, "q", b"1")
    consumer = broker.consume("q", prefetch=1)
    tag, _ = await consumer.get()

    assert consumer.ack(999) is False
    assert consumer.ack(tag) is True
    assert consumer.ack(tag) is False


async def test_requeue_puts_the_message_back_at_the_head_marked_redelivered() -> None:
    broker = MemoryAmqp()
    queue_with(broker, "q", b"1", b"2")
    consumer = broker.consume("q", prefetch=1)
    tag, _ = await consumer.get()

    assert consumer.requeue(tag) is True
    assert consumer.ack(tag) is False  # no longer outstanding
    assert consumer.requeue(tag) is False

    _, again = await consumer.get()
    assert again.body == b"1"
    assert again.redelivered is True


async def test_close_requeues_every_unacknowledged_message_in_original_order() -> None:
    broker = MemoryAmqp()
    queue_with(broker, "q", b"1", b"2", b"3", b"4")
    consumer = broker.consume("q", prefetch=3)
    for _ in range(3):
        await consumer.get()

    consumer.close()

    queued = list(broker.queues["q"].messages)
    assert [m.body for m in queued] == [b"1", b"2", b"3", b"4"]
    assert [m.redelivered for m in queued] == [True, True, True, False]
    assert consumer.unacked == {}
    assert consumer not in broker.queues["q"].consumers


async def test_close_keeps_already_acked_messages_settled() -> None:
    broker = MemoryAmqp()
    queue_with(broker, "q", b"1", b"2", b"3")
    consumer = broker.consume("q", prefetch=3)
    tags = [(await consumer.get())[0] for _ in range(3)]
    consumer.ack(tags[1])

    consumer.close()

    assert [m.body for m in broker.queues["q"].messages] == [b"1", b"3"]


async def test_another_consumer_receives_what_a_closed_consumer_held() -> None:
    broker = MemoryAmqp()
    queue_with(broker, "q", b"1", b"2")
    first = broker.consume("q", prefetch=2)
    await first.get()
    await first.get()
    first.close()

    second = broker.consume("q", prefetch=2)
    received = [(await second.get())[1] for _ in range(2)]

    assert [(m.body, m.redelivered) for m in received] == [(b"1", True), (b"2", True)]


async def test_get_after_cancel_raises() -> None:
    broker = MemoryAmqp()
    queue_with(broker, "q", b"1")
    consumer = broker.consume("q", prefetch=1)

    consumer.cancel()

    with pytest.raises(TransportError, match="cancelled"):
        await consumer.get()
    assert len(broker.queues["q"].messages) == 1


async def test_cancel_wakes_a_waiting_get_with_an_error() -> None:
    broker = MemoryAmqp()
    broker.declare_queue("q")
    consumer = broker.consume("q", prefetch=1)
    pending = asyncio.ensure_future(consumer.get())
    assert await is_blocked(pending)

    consumer.cancel()

    with pytest.raises(TransportError, match="cancelled"):
        await asyncio.wait_for(pending, timeout=5)


async def test_outstanding_messages_can_be_acked_after_cancel() -> None:
    broker = MemoryAmqp()
    queue_with(broker, "q", b"1")
    consumer = broker.consume("q", prefetch=1)
    tag, _ = await consumer.get()

    consumer.cancel()

    assert consumer.ack(tag) is True


async def test_competing_consumers_each_get_different_messages() -> None:
    broker = MemoryAmqp()
    queue_with(broker, "q", b"1", b"2")
    first = broker.consume("q", prefetch=1)
    second = broker.consume("q", prefetch=1)

    _, a = await first.get()
    _, b = await second.get()

    assert {a.body, b.body} == {b"1", b"2"}
    assert first.tag != second.tag
    assert broker.queues["q"].consumers == [first, second]
