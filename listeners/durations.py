"""Durations in config and declarations: ``1.5`` (seconds), ``"250ms"``, ``"30s"``, ``"5m"``, ``"7d"``."""

from __future__ import annotations

import re
from datetime import timedelta
from decimal import Decimal
from typing import Annotated, Any

from annotated_types import Ge
from pydantic import BeforeValidator, PlainSerializer

_SECONDS_PER_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_PATTERN = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_ADVICE = "use a number of seconds or e.g. 250ms, 30s, 5m, 2h, 7d"


def parse_duration(value: Any) -> Any:
    """Return seconds as a float for a number, a ``timedelta`` or a string such as ``"500ms"``.

    Booleans are rejected (``true`` is not a duration). Other types are returned unchanged so that
    pydantic reports them with the key path.
    """
    if isinstance(value, bool):
        raise ValueError(f"invalid duration {value!r}: {_ADVICE}")
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        match = _PATTERN.match(value)
        if match is None:
            raise ValueError(f"invalid duration {value!r}: {_ADVICE}")
        number, unit = match.groups()
        if unit == "ms":
            # Divide rather than multiply by 0.001, so "9ms" is the float nearest 0.009.
            return float(number) / 1000
        return float(number) * _SECONDS_PER_UNIT[unit or "s"]
    return value


def format_duration(seconds: float) -> str:
    """Render seconds the way a person writes them in YAML; :func:`parse_duration` reads it back exactly."""
    seconds = float(seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size and (seconds / size).is_integer() and float(int(seconds / size) * size) == seconds:
            return f"{int(seconds / size)}{unit}"
    milliseconds = round(seconds * 1000)
    if seconds < 1 and milliseconds / 1000 == seconds:
        return f"{milliseconds}ms"
    # Positional notation of the shortest round-tripping repr: no exponent, no lost digits.
    return f"{format(Decimal(repr(seconds)), 'f')}s"


Duration = Annotated[
    float, BeforeValidator(parse_duration), Ge(0), PlainSerializer(format_duration, when_used="json")
]
"""Seconds as a float, accepting ``"250ms"``-style strings and ``timedelta``."""
