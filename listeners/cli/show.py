"""``listeners list``: the resolved listeners and where each effective value came from."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from listeners.durations import format_duration
from listeners.spec import KAFKA_ONLY, RABBIT_ONLY, TransportKind
from listeners.transport.registry import transport_available
from starter.application import Plan
from starter.resolve import ResolvedListener, source_of, uses_idempotency

DURATION_FIELDS = frozenset({"delay", "max_delay", "timeout", "ttl", "lease"})


def render_plan(plan: Plan) -> str:
    """The text ``listeners list`` prints."""
    loaded = plan.loaded
    settings = loaded.settings.listeners
    lines = [
        f"profiles: {', '.join(loaded.profiles) or '(none)'}",
        f"config files: {', '.join(str(path) for path in loaded.files) or '(none)'}",
        f"kafka: {settings.kafka.display()}{_transport_note('kafka', settings.kafka.embedded)}",
        f"rabbit: {settings.rabbit.display()}{_transport_note('rabbit', settings.rabbit.embedded)}",
        f"shutdown_timeout: {format_duration(settings.shutdown_timeout)}",
    ]
    if settings.tracing.enabled:
        tracing = settings.tracing
        lines.append(f"tracing: {tracing.exporter} exporter, sample ratio {tracing.sample_ratio}")
    if not plan.listeners:
        lines.append("")
        lines.append("no listeners found: check the container's wiring_config and providers")
    for resolved in plan.listeners:
        lines.append("")
        lines.extend(_listener_lines(resolved))
    return "\n".join(lines)


def _transport_note(kind: TransportKind, embedded: bool) -> str:
    if embedded:
        return " (embedded)"
    name = "aiokafka" if kind == "kafka" else "aio-pika"
    return "" if transport_available(kind, name) else f" (the {name} transport is not part of this version)"


def _listener_lines(resolved: ResolvedListener) -> Iterator[str]:
    declaration = resolved.declaration
    yield f"{resolved.listener_id}  [{resolved.endpoint.kind}]  {declaration.spec.handler_name}"
    hidden = set(RABBIT_ONLY if resolved.endpoint.kind == "kafka" else KAFKA_ONLY)
    if not uses_idempotency(resolved):
        hidden.add("idempotency")
    rows = [
        (path, _format(path, value), source_of(resolved, path))
        for path, value in _flatten(resolved.endpoint.options.model_dump())
        if path.split(".")[0] not in hidden
    ]
    if resolved.endpoint.kind == "kafka" and resolved.endpoint.options.group_id is None:
        rows = [
            (p, v, s) if p != "group_id" else (p, resolved.endpoint.group_id, "default (the id)")
            for p, v, s in rows
        ]
    if declaration.forward is not None:
        rows.append(("send_to", declaration.forward.describe(), "decorator"))
    if declaration.spec.idempotency_key is not None:
        rows.append(("idempotency_key", _key_text(declaration.spec.idempotency_key), "decorator"))
    width = max(len(path) for path, _, _ in rows)
    value_width = min(40, max(len(value) for _, value, _ in rows))
    for path, value, source in rows:
        yield f"  {path.ljust(width)}  {value.ljust(value_width)}  {source}"
    for note in resolved.notes:
        yield f"  ! {note}"


def _flatten(values: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    for key, value in values.items():
        path = f"{prefix}{key}"
        if isinstance(value, Mapping):
            yield from _flatten(value, path + ".")
        else:
            yield path, value


def _format(path: str, value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, tuple | list):
        return ",".join(str(item) for item in value) or "-"
    if path.rsplit(".", 1)[-1] in DURATION_FIELDS and isinstance(value, float):
        return format_duration(value)
    return str(value)


def _key_text(key: Any) -> str:
    return key if isinstance(key, str) else f"{getattr(key, '__qualname__', repr(key))}()"
