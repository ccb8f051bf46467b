"""Log line formats: text with the message's fields appended, or one JSON object per line."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any

from listeners.logs.context import CONTEXT_FIELDS

TEXT_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"
"""The ``listeners run`` text line."""


def context_of(record: logging.LogRecord) -> dict[str, Any]:
    """The record's message and trace fields that are set, in :data:`CONTEXT_FIELDS` order."""
    fields = {}
    for name in CONTEXT_FIELDS:
        value = getattr(record, name, None)
        if value is not None:
            fields[name] = value
    return fields


class TextFormatter(logging.Formatter):
    """``TEXT_FORMAT`` with the record's fields as ``[listener_id=billing ... trace_id=...]`` after the
    message (before any traceback)."""

    def __init__(self, fmt: str = TEXT_FORMAT) -> None:
        super().__init__(fmt)

    def formatMessage(self, record: logging.LogRecord) -> str:
        line = super().formatMessage(record)
        fields = context_of(record)
        if not fields:
            return line
        return f"{line} [{' '.join(f'{name}={value}' for name, value in fields.items())}]"


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ``time`` (ISO 8601 UTC, milliseconds), ``level``, ``logger``,
    ``message``, then the fields of :data:`CONTEXT_FIELDS` that are set, ``exception`` (the traceback)
    and ``stack`` when present. Newlines inside values are escaped, so a traceback stays on its line."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update(context_of(record))
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exception"] = record.exc_text
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, ensure_ascii=False, default=str)
