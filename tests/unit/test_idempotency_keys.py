"""Reading idempotency keys: field paths, headers, functions, and the errors that name what is missing."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
from pydantic import BaseModel

from listeners.exceptions import IdempotencyKeyError, MessageError
from listeners.idempotency.keys import key_reader, needs_payload
from listeners.message import Headers, Message


class Customer(BaseModel):
    id: int


class Order(BaseModel):
    order_id: str
    customer: Customer
    note: str = ""


@dataclass
class Shipment:
    order: dict[str, Any]


def message(headers: tuple[tuple[str, bytes], ...] = ()) -> Message:
    return Message(b"{}", Headers(headers), "orders", "billing", "kafka", partition=0, offset=7)


def test_field_paths_walk_models_dataclasses_and_mappings() -> None:
    order = Order(order_id="o-1", customer=Customer(id=42))
    assert key_reader("billing", "order_id")(message(), order) == "o-1"
    assert key_reader("billing", "customer.id")(message(), order) == "42"
    assert key_reader("billing", "order.id")(message(), Shipment(order={"id": "s-9"})) == "s-9"
    assert key_reader("billing", "a.b")(message(), {"a": {"b": 3}}) == "3"


def test_a_missing_field_names_the_listener_the_message_and_the_step() -> None:
    with pytest.raises(IdempotencyKeyError) as raised:
        key_reader("billing", "customer.email")(message(), Order(order_id="o", customer=Customer(id=1)))
    assert str(raised.value) == (
        "listener billing: orders[0]@7 has no idempotency key: the payload has no 'customer.email' "
        "(missing 'email')"
    )
    assert isinstance(raised.value, MessageError), "fatal: dead-lettered, not retried"


def test_empty_and_none_keys_are_errors() -> None:
    with pytest.raises(IdempotencyKeyError, match="is empty"):
        key_reader("billing", "note")(message(), Order(order_id="o", customer=Customer(id=1)))
    with pytest.raises(IdempotencyKeyError, match="is empty"):
        key_reader("billing", "id")(message(), {"id": None})


def test_header_keys() -> None:
    read = key_reader("billing", "header:x-request-id")
    assert read(message((("x-request-id", b"r-1"),)), None) == "r-1"
    with pytest.raises(IdempotencyKeyError, match="no header 'x-request-id'"):
        read(message(), None)
    assert not needs_payload("header:x-request-id")
    assert needs_payload("order_id")


def test_key_functions_get_the_message_and_payload_and_must_return_text() -> None:
    def tenant_and_id(msg: Message, order: Order) -> str:
        return f"{msg.headers.get_str('tenant')}/{order.order_id}"

    order = Order(order_id="o-2", customer=Customer(id=1))
    assert key_reader("billing", tenant_and_id)(message((("tenant", b"t"),)), order) == "t/o-2"

    def broken(msg: Message, order: Order) -> str:
        raise KeyError("tenant")

    with pytest.raises(IdempotencyKeyError, match=r"function .*broken failed for orders\[0\]@7: KeyError"):
        key_reader("billing", broken)(message(), order)
    with pytest.raises(IdempotencyKeyError, match="returned int, not str"):
        key_reader("billing", lambda msg, payload: 5)(message(), order)
