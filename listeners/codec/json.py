"""JSON codec on pydantic: models, dataclasses, TypedDicts, containers and scalars via TypeAdapter."""

from __future__ import annotations

import inspect
from functools import lru_cache
from typing import Any

from pydantic import BaseModel, TypeAdapter

from listeners.codec.base import Decoder

JSON = "application/json"
TEXT = "text/plain; charset=utf-8"
BINARY = "application/octet-stream"


def _decode_text(body: bytes) -> str:
    return body.decode("utf-8")


def _decode_bytes(body: bytes) -> bytes:
    return body


@lru_cache(maxsize=512)
def _adapter(target: Any) -> TypeAdapter[Any]:
    return TypeAdapter(target)


class JsonCodec:
    """The default codec.

    ``bytes`` parameters get the body as is and ``str`` parameters the body as UTF-8 text; every other
    type (pydantic models, dataclasses, ``dict``, ``list``, ``int``, unions, ``Any``) is parsed from JSON
    and validated. Outgoing ``bytes`` and ``str`` are sent as they are, anything else as JSON.
    """

    def decoder_for(self, target: Any) -> Decoder:
        if target is bytes:
            return _decode_bytes
        if target is str:
            return _decode_text
        if inspect.isclass(target) and issubclass(target, BaseModel):
            if target.__pydantic_complete__:
                # The compiled validator itself: model_validate_json is a Python wrapper around it
                # that costs about a quarter of a small model's validation on every message.
                return target.__pydantic_validator__.validate_json
            return target.model_validate_json
        adapter = _adapter(target)
        return adapter.validator.validate_json if adapter.pydantic_complete else adapter.validate_json

    def encode(self, value: Any) -> tuple[bytes, str]:
        if isinstance(value, bytes | bytearray | memoryview):
            return bytes(value), BINARY
        if isinstance(value, str):
            return value.encode("utf-8"), TEXT
        if isinstance(value, BaseModel):
            return value.model_dump_json().encode("utf-8"), JSON
        value_type: Any = type(value)
        return _adapter(value_type).dump_json(value), JSON
