"""Reading a message's idempotency key, as a listener declares it with ``idempotency_key=``.

- ``"order_id"`` / ``"customer.id"``: a field path into the decoded payload (attributes of models and
  dataclasses, items of mappings); the value is turned into text with ``str``.
- ``"header:x-request-id"``: a header, as UTF-8.
- a callable ``(message, payload) -> str``.

A key that is missing, empty or not text raises :class:`~listeners.exceptions.IdempotencyKeyError`,
a message error: the message is dead-lettered, never handled without its key or dropped.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from listeners.exceptions import IdempotencyKeyError
from listeners.message import Message
from listeners.spec import IdempotencyKey

HEADER_PREFIX = "header:"

KeyReader = Callable[[Message, Any], str]
"""``(message, payload) -> key``."""


def key_reader(listener_id: str, declared: IdempotencyKey) -> KeyReader:
    """A function reading ``declared`` from a message and its decoded payload."""
    if callable(declared):
        return _from_function(listener_id, declared)
    if declared.startswith(HEADER_PREFIX):
        return _from_header(listener_id, declared.removeprefix(HEADER_PREFIX))
    return _from_path(listener_id, declared)


def needs_payload(declared: IdempotencyKey) -> bool:
    """Whether reading ``declared`` looks at the payload (not only at headers)."""
    return callable(declared) or not declared.startswith(HEADER_PREFIX)


def _from_path(listener_id: str, path: str) -> KeyReader:
    steps = path.split(".")

    def read(message: Message, payload: Any) -> str:
        value = payload
        for step in steps:
            value = _step(value, step)
            if value is _MISSING:
                raise IdempotencyKeyError(
                    f"listener {listener_id}: {message.describe()} has no idempotency key: "
                    f"the payload has no {path!r} (missing {step!r})"
                )
        return _checked(listener_id, message, str(value) if value is not None else "", f"field {path!r}")

    return read


def _from_header(listener_id: str, name: str) -> KeyReader:
    def read(message: Message, payload: Any) -> str:
        value = message.headers.get_str(name)
        if value is None:
            raise IdempotencyKeyError(
                f"listener {listener_id}: {message.describe()} has no idempotency key: no header {name!r}"
            )
        return _checked(listener_id, message, value, f"header {name!r}")

    return read


def _from_function(listener_id: str, function: Callable[..., Any]) -> KeyReader:
    name = getattr(function, "__qualname__", repr(function))

    def read(message: Message, payload: Any) -> str:
        try:
            value = function(message, payload)
        except Exception as error:
            raise IdempotencyKeyError(
                f"listener {listener_id}: idempotency key function {name} failed for {message.describe()}: "
                f"{type(error).__name__}: {error}"
            ) from error
        if not isinstance(value, str):
            raise IdempotencyKeyError(
                f"listener {listener_id}: idempotency key function {name} returned "
                f"{type(value).__name__}, not str, for {message.describe()}"
            )
        return _checked(listener_id, message, value, f"function {name}")

    return read


_MISSING = object()


_IS_MAPPING: dict[type, bool] = {}
"""Whether a payload type is a Mapping, by type: an ABC check on every message costs more than the read."""


def _step(value: Any, step: str) -> Any:
    kind = type(value)
    is_mapping = _IS_MAPPING.get(kind)
    if is_mapping is None:
        is_mapping = _IS_MAPPING[kind] = isinstance(value, Mapping)
    if is_mapping:
        return value.get(step, _MISSING)
    return getattr(value, step, _MISSING)


def _checked(listener_id: str, message: Message, key: str, source: str) -> str:
    if not key:
        raise IdempotencyKeyError(
            f"listener {listener_id}: the idempotency key of {message.describe()} ({source}) is empty"
        )
    return key
