"""JSON codec on pydantic: models, dataclasses, TypedDicts, containers and scalars via TypeAdapter."""

from __future__ import annotations

import inspect
from collections.abc import Callable
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
        value_type = type(value)
        encoder = _ENCODERS.get(value_type)
        if encoder is None:
            encoder = _encoder_for(value_type)
            if len(_ENCODERS) < _MAX_ENCODERS and not _incomplete_model(value_type):
                _ENCODERS[value_type] = encoder
        return encoder(value)


Encoder = Callable[[Any], tuple[bytes, str]]

_ENCODERS: dict[type, Encoder] = {}
"""The encoder of each type encoded so far: one dict lookup per value on a pipelined send, instead of
isinstance checks (a pydantic model's goes through its ABC metaclass)."""
_MAX_ENCODERS = 512


def _encoder_for(value_type: Any) -> Encoder:
    if issubclass(value_type, bytes | bytearray | memoryview):
        return lambda value: (bytes(value), BINARY)
    if issubclass(value_type, str):
        return lambda value: (value.encode("utf-8"), TEXT)
    if issubclass(value_type, BaseModel):
        if _incomplete_model(value_type):  # not cached: its serializer comes once it is rebuilt
            return lambda value: (value.model_dump_json().encode("utf-8"), JSON)
        # The compiled serializer's bytes: model_dump_json is a Python wrapper that decodes them to
        # text, which would be encoded back to bytes here.
        to_json = value_type.__pydantic_serializer__.to_json
        return lambda value: (to_json(value), JSON)
    dump_json = _adapter(value_type).dump_json
    return lambda value: (dump_json(value), JSON)


def _incomplete_model(value_type: type) -> bool:
    return issubclass(value_type, BaseModel) and not value_type.__pydantic_complete__
