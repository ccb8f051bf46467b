"""Durations in config and declarations: ``1.5`` (seconds), ``"250ms"``, ``"30s"``, ``"5m"``, ``"7d"``."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated, Any

from annotated_types import Ge
from pydantic import BeforeValidator, PlainSerializer

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_PATTERN = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")


def parse_duration(value: Any) -> Any:
    """Return seconds as a float for a number, a ``timedelta`` or a string such as ``"500ms"``.

    Anything else is returned unchanged so that pydantic reports it with the key path.
    """
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        match = _PATTERN.match(value)
        if match is None:
            raise ValueError(
                f"invalid duration {value!r}: use a number of seconds or e.g. 250ms, 30s, 5m, 2h, 7d"
            )
        number, unit = match.groups()
        return float(number) * _UNITS[unit or "s"]
    return value


def format_duration(seconds: float) -> str:
    """Render seconds the way a person would write them in YAML."""
    for unit, size in (("d", 86400.0), ("h", 3600.0), ("m", 60.0), ("s", 1.0)):
        if seconds >= size and (seconds / size).is_integer():
            return f"{int(seconds / size)}{unit}"
    if seconds < 1 and (seconds * 1000).is_integer():
        return f"{int(seconds * 1000)}ms"
    return f"{seconds:g}s"


Duration = Annotated[
    float, BeforeValidator(parse_duration), Ge(0), PlainSerializer(format_duration, when_used="json")
]
"""Seconds as a float, accepting ``"250ms"``-style strings and ``timedelta``."""
