"""The default JSON codec: decoders per declared type and encoding of outgoing values."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pytest
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from typing_extensions import TypedDict  # pydantic needs typing_extensions.TypedDict on Python < 3.12

from listeners.codec.base import Codec
from listeners.codec.json import BINARY, JSON, TEXT, JsonCodec


class Order(BaseModel):
    id: int
    item: str


@dataclass
class Shipment:
    order_id: int
    tags: list[str]


class Event(TypedDict):
    kind: str
    count: int


@pytest.fixture
def codec() -> JsonCodec:
    return JsonCodec()


def test_json_codec_satisfies_the_codec_protocol(codec: JsonCodec) -> None:
    as_protocol: Codec = codec

    assert callable(as_protocol.decoder_for(int))


def test_content_types() -> None:
    assert JSON == "application/json"
    assert TEXT.startswith("text/plain")
    assert "utf-8" in TEXT
    assert BINARY == "application/octet-stream"


# decoding ---------------------------------------------------------------------------------------------


def test_decodes_a_pydantic_model(codec: JsonCodec) -> None:
    order = codec.decoder_for(Order)(b'{"id": 7, "item": "book"}')

    assert order == Order(id=7, item="book")


def test_model_decoding_validates_and_coerces_like_pydantic(codec: JsonCodec) -> None:
    assert codec.decoder_for(Order)(b'{"id": "7", "item": "book"}').id == 7


def test_a_model_completed_after_its_decoder_was_made_still_decodes(codec: JsonCodec) -> None:
    class Basket(BaseModel):
        lines: list[Line]  # type: ignore[name-defined]  # defined below, as in a module declared out of order

    decode = codec.decoder_for(Basket)

    class Line(BaseModel):
        sku: str

    Basket.model_rebuild(_types_namespace={"Line": Line})
    assert decode(b'{"lines": [{"sku": "a"}]}') == Basket(lines=[Line(sku="a")])
    with pytest.raises(ValidationError):
        decode(b'{"lines": [{}]}')


def test_decodes_a_dataclass(codec: JsonCodec) -> None:
    shipment = codec.decoder_for(Shipment)(b'{"order_id": 3, "tags": ["fragile", "gift"]}')

    assert shipment == Shipment(order_id=3, tags=["fragile", "gift"])


def test_decodes_a_typed_dict(codec: JsonCodec) -> None:
    assert codec.decoder_for(Event)(b'{"kind": "click", "count": "2"}') == {"kind": "click", "count": 2}


def test_decodes_containers(codec: JsonCodec) -> None:
    assert codec.decoder_for(dict[str, int])(b'{"a": 1, "b": 2}') == {"a": 1, "b": 2}
    assert codec.decoder_for(list[int])(b"[3, 1, 2]") == [3, 1, 2]
    assert codec.decoder_for(list[Order])(b'[{"id": 1, "item": "x"}]') == [Order(id=1, item="x")]


def test_decodes_scalars_from_json(codec: JsonCodec) -> None:
    assert codec.decoder_for(int)(b"42") == 42
    assert codec.decoder_for(float)(b"1.5") == 1.5
    assert codec.decoder_for(bool)(b"true") is True


def test_str_parameters_get_the_raw_utf8_text_not_json(codec: JsonCodec) -> None:
    decode = codec.decoder_for(str)

    assert decode("héllo wörld".encode()) == "héllo wörld"
    # A JSON string literal is not unquoted: the body is text as it is.
    assert decode(b'"quoted"') == '"quoted"'
    assert decode(b"{not json") == "{not json"


def test_str_decoder_rejects_invalid_utf8(codec: JsonCodec) -> None:
    with pytest.raises(UnicodeDecodeError):
        codec.decoder_for(str)(b"\xff\xfe")


def test_bytes_parameters_get_the_body_unchanged(codec: JsonCodec) -> None:
    body = b"\x00\xff not json \x80"

    assert codec.decoder_for(bytes)(body) == body


def test_any_is_parsed_from_json(codec: JsonCodec) -> None:
    assert codec.decoder_for(Any)(b'{"a": [1, null]}') == {"a": [1, None]}


def test_unions_are_parsed_from_json(codec: JsonCodec) -> None:
    decode = codec.decoder_for(int | list[int])

    assert decode(b"5") == 5
    assert decode(b"[5]") == [5]


def test_a_union_including_str_is_parsed_as_json_not_raw_text(codec: JsonCodec) -> None:
    decode = codec.decoder_for(str | None)

    assert decode(b'"text"') == "text"
    assert decode(b"null") is None
    with pytest.raises(ValidationError):
        decode(b"text")


@pytest.mark.parametrize("target", [Order, Shipment, Event, dict[str, int], list[int], int, Any])
def test_invalid_json_raises(codec: JsonCodec, target: Any) -> None:
    with pytest.raises(ValidationError):
        codec.decoder_for(target)(b'{"id": 1,')


@pytest.mark.parametrize(
    ("target", "body"),
    [
        (Order, b'{"id": "seven", "item": "book"}'),
        (Order, b'{"item": "book"}'),
        (Shipment, b'{"order_id": 1}'),
        (Event, b'{"kind": "click"}'),
        (dict[str, int], b'{"a": "x"}'),
        (list[int], b'{"a": 1}'),
        (int, b'"abc"'),
    ],
)
def test_validation_errors_raise(codec: JsonCodec, target: Any, body: bytes) -> None:
    with pytest.raises(ValidationError):
        codec.decoder_for(target)(body)


# encoding ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("value", [b"\x00\xffraw", bytearray(b"\x00\xffraw"), memoryview(b"\x00\xffraw")])
def test_binary_values_are_sent_as_they_are(codec: JsonCodec, value: Any) -> None:
    body, content_type = codec.encode(value)

    assert body == b"\x00\xffraw"
    assert type(body) is bytes
    assert content_type == BINARY


def test_str_is_sent_as_utf8_text_not_json(codec: JsonCodec) -> None:
    assert codec.encode("héllo") == ("héllo".encode(), TEXT)


def test_pydantic_model_is_sent_as_json(codec: JsonCodec) -> None:
    body, content_type = codec.encode(Order(id=1, item="pen"))

    assert json.loads(body) == {"id": 1, "item": "pen"}
    assert content_type == JSON


def test_a_model_is_sent_byte_for_byte_as_model_dump_json_gives_it(codec: JsonCodec) -> None:
    """Encoding goes straight to the model's compiled serializer: its config (aliases, exclusions)
    still applies, and a subclass's instance is encoded with its own fields, not its parent's."""

    class Aliased(BaseModel):
        model_config = ConfigDict(serialize_by_alias=True)
        order_id: int = Field(alias="orderId")
        note: str = Field(default="x", exclude=True)

    class Child(Aliased):
        extra: str = "é"

    for value in (Aliased(orderId=1), Child(orderId=2), Aliased(orderId=3)):  # the second time: cached
        body, content_type = codec.encode(value)
        assert body == value.model_dump_json().encode()
        assert content_type == JSON
    assert json.loads(codec.encode(Child(orderId=2))[0]) == {"orderId": 2, "extra": "é"}


def test_dataclass_is_sent_as_json(codec: JsonCodec) -> None:
    body, content_type = codec.encode(Shipment(order_id=2, tags=["a"]))

    assert json.loads(body) == {"order_id": 2, "tags": ["a"]}
    assert content_type == JSON


def test_dict_containing_a_pydantic_model_is_sent_as_json(codec: JsonCodec) -> None:
    body, content_type = codec.encode({"order": Order(id=3, item="cup"), "n": [1, 2]})

    assert json.loads(body) == {"order": {"id": 3, "item": "cup"}, "n": [1, 2]}
    assert content_type == JSON


def test_list_is_sent_as_json(codec: JsonCodec) -> None:
    body, content_type = codec.encode([1, "two", None, Order(id=4, item="é")])

    assert json.loads(body) == [1, "two", None, {"id": 4, "item": "é"}]
    assert content_type == JSON


def test_scalars_and_none_are_sent_as_json(codec: JsonCodec) -> None:
    assert codec.encode(5) == (b"5", JSON)
    assert codec.encode(None) == (b"null", JSON)
    assert codec.encode(True) == (b"true", JSON)


def test_non_ascii_text_in_json_is_utf8(codec: JsonCodec) -> None:
    body, _ = codec.encode({"name": "Zoë €"})

    assert json.loads(body.decode("utf-8")) == {"name": "Zoë €"}


@pytest.mark.parametrize(
    ("value", "target"),
    [
        (Order(id=9, item="lamp"), Order),
        (Shipment(order_id=5, tags=["x", "y"]), Shipment),
        ({"kind": "view", "count": 3}, Event),
        ({"a": 1}, dict[str, int]),
        ([1, 2, 3], list[int]),
        ("plain text ✓", str),
        (b"\x01\x02", bytes),
    ],
)
def test_encode_then_decode_round_trips(codec: JsonCodec, value: Any, target: Any) -> None:
    body, _ = codec.encode(value)

    assert codec.decoder_for(target)(body) == value
