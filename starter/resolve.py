"""Effective listener options.

Precedence, lowest first: built-in defaults, ``listeners.defaults``, decorator, ``listeners.listener.<id>``.

Within the config layers, files, profiles, env vars and overrides already stack (see loading.py).
Every effective value keeps where it came from, for ``listeners list`` and for error messages.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError

from listeners.discovery import Declaration
from listeners.exceptions import ConfigError, StartupError
from listeners.spec import KAFKA_ONLY, RABBIT_ONLY, ListenerOptions, normalize_id
from listeners.transport.base import Endpoint
from starter.loading import LoadedSettings
from starter.settings import ApplicationSettings

SOURCE_FIELDS = frozenset(
    {"topics", "topic_pattern", "group_id", "queue", "exchange", "exchange_type", "routing_key"}
    | {"binding_arguments"}
)
DEFAULT_ORDERING = {"kafka": "partition", "rabbit": "none"}


@dataclass(frozen=True)
class ResolvedListener:
    """A declaration with its effective options, where each came from, and what is not honoured yet."""

    declaration: Declaration
    endpoint: Endpoint
    sources: Mapping[str, str]
    notes: tuple[str, ...]

    @property
    def listener_id(self) -> str:
        return self.endpoint.listener_id


def resolve_listeners(
    declarations: Sequence[Declaration], loaded: LoadedSettings[ApplicationSettings]
) -> list[ResolvedListener]:
    """Resolve every declaration; raise on duplicate ids and on config naming no listener."""
    by_id: dict[str, Declaration] = {}
    for declaration in declarations:
        listener_id = declaration.spec.effective_id
        other = by_id.get(normalize_id(listener_id))
        if other is not None:
            raise StartupError(
                f"duplicate listener id {listener_id!r}: {other.spec.handler_name} "
                f"({other.describe_owner()}) and {declaration.spec.handler_name} "
                f"({declaration.describe_owner()}); give one an explicit id="
            )
        by_id[normalize_id(listener_id)] = declaration
    configured = loaded.settings.listeners.listener
    for key in configured:
        if normalize_id(key) not in by_id:
            known = ", ".join(sorted(d.spec.effective_id for d in by_id.values())) or "none"
            raise ConfigError(
                f"{loaded.provenance.source_of(('listeners', 'listener', key))}: listeners.listener.{key}: "
                f"no listener has id {key!r} (known: {known})"
            )
    _reject_source_fields_in_defaults(loaded)
    return [_resolve(declaration, loaded) for declaration in declarations]


def _resolve(declaration: Declaration, loaded: LoadedSettings[ApplicationSettings]) -> ResolvedListener:
    spec = declaration.spec
    listener_id = spec.effective_id
    config_key = next(
        (key for key in loaded.settings.listeners.listener if normalize_id(key) == normalize_id(listener_id)),
        None,
    )
    layers: list[tuple[dict[str, Any], Any]] = [
        (_explicit(loaded.settings.listeners.defaults), ("listeners", "defaults")),
        (_explicit(spec.options), "decorator"),
    ]
    if config_key is not None:
        overrides = _explicit(loaded.settings.listeners.listener[config_key])
        foreign = sorted(set(overrides) & (RABBIT_ONLY if spec.kind == "kafka" else KAFKA_ONLY))
        if foreign:
            path: tuple[str, ...] = ("listeners", "listener", config_key, foreign[0])
            raise ConfigError(
                f"{loaded.provenance.source_of(path)}: {'.'.join(path)}: not an option of {spec.kind} "
                f"listener {listener_id!r}"
            )
        layers.append((overrides, ("listeners", "listener", config_key)))
    merged: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for values, origin in layers:
        _merge(merged, values)
        for path in _leaves(values):
            sources[".".join(path)] = (
                origin if isinstance(origin, str) else str(loaded.provenance.source_of((*origin, *path)))
            )
    if merged.get("ordering") is None:
        merged["ordering"] = DEFAULT_ORDERING[spec.kind]
    try:
        options = ListenerOptions.model_validate(merged)
    except ValidationError as error:
        raise ConfigError(f"listener {listener_id!r} ({spec.handler_name}): {error}") from None
    if options.topics and options.topic_pattern:
        raise ConfigError(
            f"listener {listener_id!r}: topics ({sources['topics']}) and topic_pattern "
            f"({sources['topic_pattern']}) are both set; keep one"
        )
    return ResolvedListener(
        declaration=declaration,
        endpoint=Endpoint(listener_id, spec.kind, options),
        sources=sources,
        notes=_not_yet_honoured(declaration, options, sources),
    )


def source_of(resolved: ResolvedListener, path: str) -> str:
    """Where an effective option came from: the layer that set it or its nearest parent, else default."""
    parts = path.split(".")
    for end in range(len(parts), 0, -1):
        found = resolved.sources.get(".".join(parts[:end]))
        if found is not None:
            return found
    return "default"


def uses_idempotency(resolved: ResolvedListener) -> bool:
    """Whether the listener declares an idempotency key or sets idempotency options."""
    return resolved.declaration.spec.idempotency_key is not None or any(
        path.startswith("idempotency") for path in resolved.sources
    )


def _not_yet_honoured(
    declaration: Declaration, options: ListenerOptions, sources: Mapping[str, str]
) -> tuple[str, ...]:
    notes = []
    if declaration.spec.idempotency_key is None and any(path.startswith("idempotency") for path in sources):
        notes.append(
            "idempotency options are set but the listener has no idempotency_key: nothing is deduplicated"
        )
    return tuple(notes)


def _reject_source_fields_in_defaults(loaded: LoadedSettings[ApplicationSettings]) -> None:
    misplaced = sorted(set(_explicit(loaded.settings.listeners.defaults)) & SOURCE_FIELDS)
    if misplaced:
        path = ("listeners", "defaults", misplaced[0])
        raise ConfigError(
            f"{loaded.provenance.source_of(path)}: {'.'.join(path)}: where a listener consumes from "
            "is set per listener (decorator or listeners.listener.<id>), not in defaults"
        )


def _explicit(model: BaseModel) -> dict[str, Any]:
    return model.model_dump(exclude_unset=True)


def _merge(target: dict[str, Any], values: Mapping[str, Any]) -> None:
    for key, value in values.items():
        if isinstance(value, Mapping) and isinstance(target.get(key), dict):
            _merge(target[key], value)
        else:
            target[key] = dict(value) if isinstance(value, Mapping) else value


def _leaves(values: Mapping[str, Any], prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    paths: list[tuple[str, ...]] = []
    for key, value in values.items():
        if isinstance(value, Mapping) and value:
            paths.extend(_leaves(value, (*prefix, key)))
        else:
            paths.append((*prefix, key))
    return paths
