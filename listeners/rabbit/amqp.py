"""AMQP message properties <-> the broker-neutral message shape."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from listeners.message import HeaderPairs


def header_pairs_from_table(table: dict[str, Any] | None) -> HeaderPairs:
    """AMQP header table values as bytes: text as UTF-8, numbers and booleans as their text."""
    if not table:
        return ()
    return tuple((name, _to_bytes(value)) for name, value in table.items())


def table_from_header_pairs(pairs: HeaderPairs) -> dict[str, Any]:
    """Header pairs as an AMQP table: UTF-8 values as strings (what Spring AMQP reads), other bytes as
    byte arrays (the AMQP type pamqp encodes for ``bytearray``; it refuses plain ``bytes``)."""
    table: dict[str, Any] = {}
    for name, value in pairs:
        try:
            table[name] = value.decode("utf-8")
        except UnicodeDecodeError:
            table[name] = bytearray(value)
    return table


_KEPT_PROPERTIES = (
    ("content_encoding", "content_encoding"),
    ("priority", "priority"),
    ("correlation_id", "correlation_id"),
    ("reply_to", "reply_to"),
    ("message_id", "message_id"),
    ("timestamp", "timestamp"),
    ("message_type", "type"),
    ("app_id", "app_id"),
)


def kept_properties(properties: Any) -> dict[str, Any]:
    """The AMQP properties of a consumed message to keep when republishing it, as ``aio_pika.Message``
    arguments. Not ``expiration`` (a per-message TTL would fire again) nor ``user_id`` (the broker
    checks it against the publishing user); content type, headers and delivery mode are set apart."""
    kept: dict[str, Any] = {}
    if properties is None:
        return kept
    for attribute, argument in _KEPT_PROPERTIES:
        value = getattr(properties, attribute, None)
        if value is not None:
            kept[argument] = value
    return kept


def timestamp_seconds(value: Any) -> float | None:
    if isinstance(value, datetime):
        return value.timestamp()
    if isinstance(value, int | float):
        return float(value)
    return None


def _to_bytes(value: Any) -> bytes:
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value)
    if isinstance(value, bool):
        return b"true" if value else b"false"
    return str(value).encode("utf-8")
