"""Structured logs: the current span's trace id on every line, a JSON line format, message fields on
failure lines, and an optional line per handled message."""

from listeners.logs.context import CONTEXT_FIELDS, TraceContextFilter, message_fields
from listeners.logs.formatting import TEXT_FORMAT, JsonFormatter, TextFormatter
from listeners.logs.per_message import MessageLog
from listeners.logs.setup import install_logging, message_log_steps

__all__ = [
    "CONTEXT_FIELDS",
    "TEXT_FORMAT",
    "JsonFormatter",
    "MessageLog",
    "TextFormatter",
    "TraceContextFilter",
    "install_logging",
    "message_fields",
    "message_log_steps",
]
