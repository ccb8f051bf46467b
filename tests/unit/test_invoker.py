"""Invocation: payload decoding by annotation, context parameters, sync handlers, forwarding."""

from __future__ import annotations

import contextvars
import dataclasses
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Annotated, Any

import pytest
from pydantic import BaseModel, ValidationError

from listeners import Header, Headers, Message, MessageDecodeError
from listeners.codec import JsonCodec
from listeners.message import header_pairs
from listeners.outcome import Ack
from listeners.runtime.invoker import Invoker
from listeners.runtime.parameters import plan_parameters


class Order(BaseModel):
    order_id: str
    amount: int


@dataclasses.dataclass
class Point:
    x: int
    y: int


def message(body: bytes, **headers: str) -> Message:
    return Message(
        body=body,
        headers=Headers(header_pairs({name.replace("_", "-"): value for name, value in headers.items()})),
        destination="orders",
        listener_id="test",
        transport="kafka",
        key=b"k",
        partition=0,
        offset=7,
    )


@pytest.fixture
def executor():  # type: ignore[no-untyped-def]
    with ThreadPoolExecutor(2, thread_name_prefix="listeners-handler") as pool:
        yield pool


async def call(handler: Any, msg: Message, executor: ThreadPoolExecutor, forward: Any = None) -> Any:
    invoker = Invoker(
        listener_id="test",
        handler=handler,
        plan=plan_parameters(handler, "test handler"),
        codec=JsonCodec(),
        executor=executor,
        forward=forward,
    )
    return await invoker(msg)


@pytest.mark.parametrize(
    ("annotation", "body", "expected"),
    [
        (Order, b'{"order_id": "o", "amount": 2}', Order(order_id="o", amount=2)),
        (Point, b'{"x": 1, "y": 2}', Point(1, 2)),
        (dict[str, int], b'{"a": 1}', {"a": 1}),
        (list[int], b"[1, 2, 3]", [1, 2, 3]),
        (str, b"plain text", "plain text"),
        (bytes, b"\x00\xff raw", b"\x00\xff raw"),
        (int, b"42", 42),
        (Any, b'{"free": ["form"]}', {"free": ["form"]}),
    ],
)
async def test_payload_is_decoded_by_its_annotation(
    annotation: Any, body: bytes, expected: Any, executor
) -> None:  # type: ignore[no-untyped-def]
    received = []

    async def handler(payload: annotation) -> None:  # type: ignore[valid-type]
        received.append(payload)

    handler.__annotations__["payload"] = annotation
    assert await call(handler, message(body), executor) == Ack()
    assert received == [expected]


async def test_unannotated_payload_is_parsed_as_json(executor) -> None:  # type: ignore[no-untyped-def]
    received = []

    async def handler(payload) -> None:  # type: ignore[no-untyped-def]
        received.append(payload)

    await call(handler, message(b'[1, {"a": null}]'), executor)
    assert received == [[1, {"a": None}]]


async def test_undecodable_payload_raises_message_decode_error_naming_the_source(executor) -> None:  # type: ignore[no-untyped-def]
    async def handler(order: Order) -> None:
        raise AssertionError("must not be called")

    with pytest.raises(
        MessageDecodeError, match=r"listener test: cannot decode the payload of orders\[0\]@7 as Order"
    ):
        await call(handler, message(b'{"order_id": 1}'), executor)


async def test_context_parameters_receive_message_headers_and_single_headers(executor) -> None:  # type: ignore[no-untyped-def]
    seen: dict[str, Any] = {}

    async def handler(
        order: Order,
        msg: Message,
        headers: Headers,
        request_id: Annotated[str, Header("x-request-id")],
        priority: Annotated[int, Header("x-priority")],
        raw: Annotated[bytes, Header("x-request-id")],
        missing: Annotated[str | None, Header("x-missing")] = None,
    ) -> None:
        seen.update(
            msg=msg, headers=headers, request_id=request_id, priority=priority, raw=raw, missing=missing
        )

    msg = message(b'{"order_id": "o", "amount": 1}', x_request_id="r-9", x_priority="3")
    await call(handler, msg, executor)
    assert seen == {
        "msg": msg,
        "headers": msg.headers,
        "request_id": "r-9",
        "priority": 3,
        "raw": b"r-9",
        "missing": None,
    }


async def test_missing_required_header_and_bad_header_value_are_decode_errors(executor) -> None:  # type: ignore[no-untyped-def]
    async def needs_header(body: bytes, tenant: Annotated[str, Header("x-tenant")]) -> None: ...

    async def needs_int(body: bytes, priority: Annotated[int, Header("x-priority")]) -> None: ...

    with pytest.raises(MessageDecodeError, match="has no header 'x-tenant' required by parameter 'tenant'"):
        await call(needs_header, message(b"x"), executor)
    with pytest.raises(MessageDecodeError, match=r"header 'x-priority' .* does not fit parameter 'priority'"):
        await call(needs_int, message(b"x", x_priority="high"), executor)


async def test_sync_handler_runs_in_the_executor_with_the_callers_context(executor) -> None:  # type: ignore[no-untyped-def]
    tenant: contextvars.ContextVar[str] = contextvars.ContextVar("tenant")
    tenant.set("acme")
    seen = []

    def handler(text: str) -> None:
        seen.append((threading.current_thread().name, tenant.get()))

    await call(handler, message(b"hi"), executor)
    [(thread, value)] = seen
    assert thread.startswith("listeners-handler")
    assert value == "acme"


async def test_handler_exceptions_propagate_to_the_error_handler(executor) -> None:  # type: ignore[no-untyped-def]
    def handler(text: str) -> None:
        raise KeyError("boom")

    with pytest.raises(KeyError, match="boom"):
        await call(handler, message(b"hi"), executor)


async def test_return_value_is_forwarded_and_none_is_not(executor) -> None:  # type: ignore[no-untyped-def]
    forwarded = []

    async def forward(result: Any, msg: Message) -> None:
        forwarded.append((result, msg.offset))

    async def doubler(number: int) -> int | None:
        return number * 2 if number else None

    await call(doubler, message(b"21"), executor, forward)
    await call(doubler, message(b"0"), executor, forward)
    assert forwarded == [(42, 7)]


async def test_forward_failure_fails_the_attempt(executor) -> None:  # type: ignore[no-untyped-def]
    async def forward(result: Any, msg: Message) -> None:
        raise ConnectionError("broker down")

    async def echo(number: int) -> int:
        return number

    with pytest.raises(ConnectionError):
        await call(echo, message(b"1"), executor, forward)


def invoker_of(handler: Any, executor: ThreadPoolExecutor, forward: Any = None) -> Invoker:
    return Invoker(
        listener_id="test",
        handler=handler,
        plan=plan_parameters(handler, "test handler"),
        codec=JsonCodec(),
        executor=executor,
        forward=forward,
    )


async def test_a_payload_only_async_handler_is_offered_for_a_direct_call(executor) -> None:  # type: ignore[no-untyped-def]
    seen: list[Order] = []

    async def handle(order: Order) -> None:
        seen.append(order)

    direct = invoker_of(handle, executor).direct
    assert direct is not None
    await direct.handler(direct.decode(b'{"order_id": "o", "amount": 2}'))
    assert seen == [Order(order_id="o", amount=2)]
    with pytest.raises(ValidationError, match="amount") as invalid:
        direct.decode(b'{"order_id": "o"}')
    failure = direct.decode_failed(message(b'{"order_id": "o"}'), invalid.value)
    assert isinstance(failure, MessageDecodeError)
    assert "listener test" in str(failure)
    assert "orders[0]@7" in str(failure)
    assert "as Order" in str(failure)


async def test_handlers_needing_more_than_their_payload_get_no_direct_call(executor) -> None:  # type: ignore[no-untyped-def]
    async def with_message(order: Order, msg: Message) -> None: ...

    def sync(order: Order) -> None: ...

    async def forwarding(order: Order) -> Order:
        return order

    async def forward(value: Any, msg: Message) -> None: ...

    assert invoker_of(with_message, executor).direct is None
    assert invoker_of(sync, executor).direct is None
    assert invoker_of(forwarding, executor, forward=forward).direct is None
