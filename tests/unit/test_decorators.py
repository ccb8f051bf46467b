"""Declarations: what the decorators attach, and the errors that name the handler and the reason."""

from __future__ import annotations

from typing import Annotated

import pytest
from dependency_injector.wiring import Provide, inject
from pydantic import BaseModel

from listeners import DeclarationError, Header, Message, Retry, kafka_listener, rabbit_listener, send_to
from listeners.decorators import forward_target, listener_specs
from listeners.spec import ForwardTarget


class Order(BaseModel):
    order_id: str


def test_kafka_listener_attaches_a_spec_and_returns_the_function_itself() -> None:
    async def handle(order: Order) -> None: ...

    decorated = kafka_listener("orders", "refunds", id="billing", concurrency=3, ordering="key")(handle)

    assert decorated is handle
    [spec] = listener_specs(handle)
    assert spec.kind == "kafka"
    assert spec.id == "billing"
    assert spec.options.topics == ("orders", "refunds")
    assert spec.options.model_fields_set == {"topics", "concurrency", "ordering"}
    assert spec.handler_name == f"{__name__}.{handle.__qualname__}"


def test_rabbit_listener_declares_queue_binding() -> None:
    @rabbit_listener("notifications", exchange="events", routing_key=["order.*", "refund.*"], prefetch=10)
    async def handle(order: Order) -> None: ...

    [spec] = listener_specs(handle)
    assert spec.kind == "rabbit"
    assert spec.options.queue == "notifications"
    assert spec.options.routing_key == ("order.*", "refund.*")
    assert spec.options.prefetch == 10


def test_default_id_is_derived_from_the_qualified_name() -> None:
    class Notifier:
        @rabbit_listener("q")
        async def on_event(self, event: Order) -> None: ...

    [spec] = listener_specs(Notifier.on_event)
    assert spec.id is None
    assert spec.effective_id == "test_default_id_is_derived_from_the_qualified_name_notifier_on_event"


def test_retry_accepts_a_model_or_a_mapping_with_durations() -> None:
    @kafka_listener("a", retry=Retry(attempts=5))
    async def first(order: Order) -> None: ...

    @kafka_listener("b", retry={"attempts": 4, "backoff": {"delay": "250ms"}, "not_retryable": [ValueError]})
    async def second(order: Order) -> None: ...

    assert listener_specs(first)[0].options.retry.attempts == 5
    retry = listener_specs(second)[0].options.retry
    assert (retry.attempts, retry.backoff.delay, retry.not_retryable) == (4, 0.25, ("ValueError",))


def test_a_function_may_carry_several_listener_declarations() -> None:
    @kafka_listener("orders", id="from-kafka")
    @rabbit_listener("orders", id="from-rabbit")
    async def handle(order: Order) -> None: ...

    assert [spec.id for spec in listener_specs(handle)] == ["from-rabbit", "from-kafka"]


def test_unknown_option_names_the_handler_and_suggests_the_right_one() -> None:
    with pytest.raises(DeclarationError) as error:

        @kafka_listener("orders", concurency=2)
        async def handle(order: Order) -> None: ...

    text = str(error.value)
    assert "@kafka_listener on tests.unit.test_decorators." in text
    assert "handle" in text
    assert "unknown option 'concurency' (did you mean 'concurrency'?)" in text


def test_option_of_the_other_transport_is_named_as_such() -> None:
    with pytest.raises(DeclarationError, match="'queue' is not a kafka option"):

        @kafka_listener("orders", queue="q")
        async def handle(order: Order) -> None: ...


def test_invalid_values_are_reported_with_their_key() -> None:
    with pytest.raises(
        DeclarationError, match=r"retry\.attempts: Input should be greater than or equal to 1"
    ):

        @kafka_listener("orders", retry={"attempts": 0})
        async def handle(order: Order) -> None: ...

    with pytest.raises(DeclarationError, match="ordering"):

        @kafka_listener("orders", ordering="random")
        async def other(order: Order) -> None: ...


@pytest.mark.parametrize(
    ("declare", "message"),
    [
        (lambda: kafka_listener(), "no topics given"),
        (lambda: rabbit_listener(), "no queue given"),
        (lambda: kafka_listener("t", id="bad id!"), "id 'bad id!' must start with a letter or digit"),
        (lambda: kafka_listener("t", idempotency_key=42), "idempotency_key must be"),
    ],
)
def test_incomplete_declarations_fail_at_decoration(declare, message: str) -> None:
    async def handle(order: Order) -> None: ...

    with pytest.raises(DeclarationError, match=message):
        declare()(handle)


def test_a_handler_without_payload_or_message_parameter_is_rejected() -> None:
    with pytest.raises(DeclarationError, match="no payload parameter"):

        @kafka_listener("orders")
        async def handle() -> None: ...


def test_a_second_unresolvable_parameter_is_rejected_with_its_name() -> None:
    with pytest.raises(
        DeclarationError, match="parameter 'extra' cannot be resolved: the payload is 'order'"
    ):

        @kafka_listener("orders")
        async def handle(order: Order, extra: int) -> None: ...


def test_context_and_injected_parameters_are_not_payload_candidates() -> None:
    @kafka_listener("orders")
    @inject
    async def handle(
        message: Message,
        order: Order,
        request_id: Annotated[str, Header("x-request-id")],
        service: object = Provide["service"],
        retries: int = 3,
    ) -> None: ...

    assert listener_specs(handle)


def test_message_only_handler_is_allowed() -> None:
    @rabbit_listener("raw")
    async def handle(message: Message) -> None: ...

    assert listener_specs(handle)


def test_method_self_is_not_taken_for_the_payload() -> None:
    # Were 'self' the payload, 'order' would be a second parameter without a default: an error.
    class Handlers:
        @kafka_listener("orders")
        async def handle(self, order: Order) -> None: ...

    assert listener_specs(Handlers.handle)


def test_method_without_payload_fails_even_though_it_has_self() -> None:
    with pytest.raises(DeclarationError, match="no payload parameter"):

        class Handlers:
            @kafka_listener("orders")
            async def handle(self) -> None: ...


def test_generators_and_staticmethods_are_rejected_with_advice() -> None:
    with pytest.raises(DeclarationError, match="cannot be a generator"):

        @kafka_listener("orders")
        async def handle(order: Order):  # type: ignore[no-untyped-def]
            yield order

    with pytest.raises(DeclarationError, match="put @kafka_listener below @staticmethod"):

        class Handlers:
            @kafka_listener("orders")
            @staticmethod
            async def handle(order: Order) -> None: ...


def test_send_to_forms() -> None:
    def target(decorator) -> ForwardTarget:  # type: ignore[no-untyped-def]
        async def handle(order: Order) -> Order:
            return order

        result = forward_target(decorator(handle))
        assert result is not None
        return result

    assert target(send_to("payments")).resolve("kafka") == ("kafka", "payments", "")
    assert target(send_to("payments")).resolve("rabbit") == ("rabbit", "", "payments")
    assert target(send_to("events/order.paid")).resolve("rabbit") == ("rabbit", "events", "order.paid")
    assert target(send_to(topic="t")).resolve("rabbit") == ("kafka", "t", "")
    assert target(send_to(exchange="x", routing_key="k")).resolve("kafka") == ("rabbit", "x", "k")


def test_send_to_misuse() -> None:
    with pytest.raises(DeclarationError, match="exactly one of"):
        send_to("a", topic="b")
    with pytest.raises(DeclarationError, match="exactly one of"):
        send_to()
    with pytest.raises(DeclarationError, match="applied twice"):

        @send_to("a")
        @send_to("b")
        async def handle(order: Order) -> Order:
            return order


def test_send_to_works_above_and_below_the_listener_decorator() -> None:
    @send_to("out-1")
    @kafka_listener("in")
    async def above(order: Order) -> Order:
        return order

    @kafka_listener("in")
    @send_to("out-2")
    async def below(order: Order) -> Order:
        return order

    assert forward_target(above) == ForwardTarget("out-1")
    assert forward_target(below) == ForwardTarget("out-2")


def test_batch_listeners_take_a_list_payload() -> None:
    @kafka_listener("orders", batch=True)
    async def handle(orders: list[Order], messages: list[Message]) -> None: ...

    assert listener_specs(handle)[0].options.batch is True
    with pytest.raises(DeclarationError, match="a batch listener's payload 'order' must be a list"):

        @kafka_listener("orders", batch=True)
        async def single(order: Order) -> None: ...

    with pytest.raises(DeclarationError, match="'batch' is not a rabbit option"):

        @rabbit_listener("q", batch=True)
        async def rabbit(orders: list[Order]) -> None: ...


def test_a_topic_pattern_instead_of_topics() -> None:
    @kafka_listener(pattern=r"orders\..*")
    async def handle(order: Order) -> None: ...

    assert listener_specs(handle)[0].options.topic_pattern == r"orders\..*"
    with pytest.raises(DeclarationError, match="give topics or a pattern, not both"):
        kafka_listener("orders", pattern="x")(handle)
    with pytest.raises(DeclarationError, match="is not a regular expression"):
        kafka_listener(pattern="orders[")(handle)
