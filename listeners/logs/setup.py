"""Installing ``listeners.logging`` (a LoggingSettings): format and trace ids on the root handlers,
and the per-message step."""

from __future__ import annotations

import logging
import sys
from typing import Any

from listeners.logs.context import TraceContextFilter
from listeners.logs.formatting import JsonFormatter, TextFormatter
from listeners.logs.per_message import MessageLog
from listeners.runtime.pipeline import Interceptor


def install_logging(settings: Any, logger: logging.Logger | None = None) -> None:
    """Give every handler of ``logger`` (default: the root logger; a stderr handler if it has none)
    the ``settings.format`` formatter and a :class:`TraceContextFilter` (once). The level is left to
    the caller (``listeners run`` sets it from ``--log-level`` or ``settings.level``)."""
    target = logger or logging.getLogger()
    if not target.handlers:
        target.addHandler(logging.StreamHandler(sys.stderr))
    formatter = JsonFormatter() if settings.format == "json" else TextFormatter()
    for handler in target.handlers:
        handler.setFormatter(formatter)
        if not any(isinstance(existing, TraceContextFilter) for existing in handler.filters):
            handler.addFilter(TraceContextFilter())


def message_log_steps(settings: Any) -> list[Interceptor]:
    """The pipeline steps ``settings.per_message`` asks for: a :class:`MessageLog`, or none."""
    return [MessageLog()] if settings.per_message else []
