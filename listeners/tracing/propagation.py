"""W3C ``traceparent`` / ``tracestate`` / ``baggage`` in message headers (pure, no broker code).

Headers are the framework's ``(name, bytes)`` pairs. Injecting replaces any context headers already
there (a forwarded message carries the new span's context, not its source's); extracting reads the
last value of each, and a malformed ``traceparent`` yields an empty context: a new trace, never an
error.
"""

from __future__ import annotations

from opentelemetry.context import Context
from opentelemetry.propagate import get_global_textmap
from opentelemetry.propagators.textmap import Getter, Setter

from listeners.message import HeaderPairs, Headers

TRACE_HEADERS = frozenset({"traceparent", "tracestate", "baggage"})


class _HeadersGetter(Getter[Headers]):
    def get(self, carrier: Headers, key: str) -> list[str] | None:
        value = carrier.get_str(key)
        return [value] if value is not None else None

    def keys(self, carrier: Headers) -> list[str]:
        return list(carrier)


class _DictSetter(Setter[dict[str, str]]):
    def set(self, carrier: dict[str, str], key: str, value: str) -> None:
        carrier[key] = value


_GETTER = _HeadersGetter()
_SETTER = _DictSetter()


def inject(headers: HeaderPairs, context: Context | None = None) -> HeaderPairs:
    """``headers`` with the current (or given) trace context written into them."""
    written: dict[str, str] = {}
    get_global_textmap().inject(written, context=context, setter=_SETTER)
    if not written:
        return headers
    kept = tuple((name, value) for name, value in headers if name not in written)
    return (*kept, *((name, value.encode()) for name, value in written.items()))


def extract(headers: Headers) -> Context | None:
    """The trace context a message carries, or None when it carries none."""
    if not headers.pairs or "traceparent" not in headers:
        return None
    return get_global_textmap().extract(headers, getter=_GETTER)
