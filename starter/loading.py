"""Layered configuration: ``application.yaml``, its profiles, environment variables and overrides.

Layers, lowest precedence first: ``application.yaml``, ``application-{profile}.yaml`` for each active
profile in order, ``LISTENERS__...`` environment variables, then explicit overrides (CLI, tests).
Mappings are deep-merged; lists and scalars replace. :class:`Provenance` remembers which layer set
each key, so that errors (and ``config`` tooling) can name the file or variable to fix.
"""

from __future__ import annotations

import difflib
import logging
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import UnionType
from typing import Annotated, Any, Generic, Literal, TypeVar, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails
from pydantic_settings import BaseSettings, EnvSettingsSource
from pydantic_settings.exceptions import SettingsError

from listeners.exceptions import ConfigError
from listeners.spec import normalize_id

LOGGER = logging.getLogger("listeners.config")
PROFILES_ENV = "LISTENERS_PROFILES"
DEFAULT_CONFIG_DIR = "config"
LISTENER_IDS = ("listeners", "listener")
"""Key path of the mapping whose keys are listener ids, matched by :func:`normalize_id`."""

_PROFILE_NAME = re.compile(r"[A-Za-z0-9_.-]+")
_SECRET_WORDS = ("password", "secret", "token", "url", "dsn", "key")
_MAX_SHOWN_INPUT = 40

KeyPath = tuple[str, ...]
S = TypeVar("S", bound=BaseModel)


@dataclass(frozen=True)
class LaunchOptions:
    """Where configuration comes from. ``None`` fields fall back to the process (cwd, environment)."""

    config_dir: str | Path | None = None
    profiles: tuple[str, ...] | None = None
    overrides: Mapping[str, Any] = field(default_factory=dict)
    environ: Mapping[str, str] | None = None


@dataclass(frozen=True)
class Source:
    """One configuration layer: a file, an environment variable, an override key, or the defaults."""

    kind: Literal["default", "file", "env", "override"]
    detail: str = ""

    def __str__(self) -> str:
        return f"{self.kind} {self.detail}" if self.detail else self.kind


class Provenance:
    """Which layer set each key path. Listener ids match in any spelling :func:`normalize_id` equates."""

    def __init__(self) -> None:
        self._set_by: dict[KeyPath, tuple[int, Source]] = {}
        self._id_spellings: dict[str, str] = {}

    def source_of(self, path: Sequence[str]) -> Source:
        """The highest-precedence layer that set ``path`` or an ancestor of it (nearest wins a tie),
        else the highest one that set something below it."""
        key = self._spelled(tuple(path), learn=False)
        best: tuple[int, Source] | None = None
        for length in range(len(key), 0, -1):
            found = self._set_by.get(key[:length])
            if found is not None and (best is None or found[0] > best[0]):
                best = found
        if best is None:
            # A whole-section check (a model validator) fails on a path no layer set itself: name the
            # highest-precedence layer that set something below it.
            below = [found for path, found in self._set_by.items() if path[: len(key)] == key]
            best = max(below, key=lambda found: found[0], default=None)
        return best[1] if best is not None else Source("default")

    def paths(self) -> dict[KeyPath, Source]:
        """Every key path some layer set, with the highest-precedence layer that set it."""
        return {path: source for path, (_, source) in self._set_by.items()}

    def _record(self, path: KeyPath, rank: int, source: Source) -> None:
        self._set_by[self._spelled(path, learn=True)] = (rank, source)

    def _spelled(self, path: KeyPath, *, learn: bool) -> KeyPath:
        """``path`` with its listener id in the first-seen spelling, as the merged settings keep it."""
        if len(path) <= len(LISTENER_IDS) or path[: len(LISTENER_IDS)] != LISTENER_IDS:
            return path
        listener_id = path[len(LISTENER_IDS)]
        normalized = normalize_id(listener_id)
        if learn:
            self._id_spellings.setdefault(normalized, listener_id)
        kept = self._id_spellings.get(normalized, listener_id)
        return (*LISTENER_IDS, kept, *path[len(LISTENER_IDS) + 1 :])


@dataclass(frozen=True)
class LoadedSettings(Generic[S]):
    """Validated settings, where each value came from, the files read (in precedence order), the profiles."""

    settings: S
    provenance: Provenance
    files: tuple[Path, ...]
    profiles: tuple[str, ...]


@dataclass(frozen=True)
class _Layer:
    data: dict[str, Any]
    sets: list[tuple[KeyPath, Source]]


def load_settings(model: type[S], options: LaunchOptions) -> LoadedSettings[S]:
    """Read, merge and validate every layer; raise :class:`ConfigError` naming the file/key/reason."""
    environ = os.environ if options.environ is None else options.environ
    profiles = _active_profiles(options.profiles, environ)
    files = _config_files(_config_dir(options.config_dir), profiles)
    layers = [_file_layer(path) for path in files]
    layers += [_env_layer(model, environ), _override_layer(options.overrides)]
    merged: dict[str, Any] = {}
    provenance = Provenance()
    for rank, layer in enumerate(layers, start=1):
        for path, source in layer.sets:
            provenance._record(path, rank, source)
        merged = _merge(merged, layer.data)
    try:
        settings = _validate(model, merged)
    except ValidationError as error:
        lines = dict.fromkeys(_describe(model, item, merged, provenance) for item in error.errors())
        raise ConfigError("\n".join(["invalid configuration", *lines])) from None
    return LoadedSettings(settings, provenance, tuple(files), profiles)


def _validate(model: type[S], data: dict[str, Any]) -> S:
    # Not model_validate(): pydantic runs a custom __init__ from it, and BaseSettings.__init__ would read
    # os.environ and .env files again, bypassing options.environ and the precedence above.
    settings = model.__new__(model)
    BaseModel.__init__(settings, **data)
    return settings


def _active_profiles(given: tuple[str, ...] | None, environ: Mapping[str, str]) -> tuple[str, ...]:
    if given is None:
        given = tuple(name.strip() for name in environ.get(PROFILES_ENV, "").split(",") if name.strip())
    for profile in given:
        if not _PROFILE_NAME.fullmatch(profile):
            raise ConfigError(f"invalid profile name {profile!r}: use letters, digits, '_', '.' and '-'")
    return tuple(given)


def _config_dir(given: str | Path | None) -> Path:
    directory = Path(DEFAULT_CONFIG_DIR if given is None else given)
    if given is not None and not directory.is_dir():
        raise ConfigError(f"config directory {str(directory)!r} does not exist")
    return directory


def _config_files(directory: Path, profiles: tuple[str, ...]) -> list[Path]:
    base = _find_file(directory, "application")
    files = [base] if base is not None else []
    for profile in profiles:
        found = _find_file(directory, f"application-{profile}")
        if found is None:
            expected = directory / f"application-{profile}.yaml"
            LOGGER.warning("profile %r is active but %s does not exist; ignoring it", profile, expected)
        else:
            files.append(found)
    return files


def _find_file(directory: Path, stem: str) -> Path | None:
    existing = [path for path in (directory / f"{stem}.yaml", directory / f"{stem}.yml") if path.is_file()]
    if len(existing) > 1:
        raise ConfigError(f"ambiguous configuration: both {existing[0]} and {existing[1]} exist; keep one")
    return existing[0] if existing else None


def _file_layer(path: Path) -> _Layer:
    data = _read_yaml(path)
    return _Layer(data, [(leaf, Source("file", str(path))) for leaf in _leaf_paths(data)])


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that rejects a key given twice in one mapping (plain YAML keeps the last silently)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=_StrictLoader)  # a SafeLoader subclass
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        raise ConfigError(f"invalid YAML in {path}{where}: {error.problem}") from None
    except (yaml.YAMLError, OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"cannot read {path}: {error}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of keys, not a {type(data).__name__}")
    return _with_str_keys(data)


def _with_str_keys(data: Mapping[Any, Any]) -> dict[str, Any]:
    # YAML reads keys such as 2024 or 1.5 as numbers; settings keys and listener ids are strings.
    return {
        str(key): _with_str_keys(value) if isinstance(value, Mapping) else value
        for key, value in data.items()
    }


def _leaf_paths(data: Mapping[str, Any], prefix: KeyPath = ()) -> Iterator[KeyPath]:
    for key, value in data.items():
        path = (*prefix, key)
        if isinstance(value, Mapping) and value:
            yield from _leaf_paths(value, path)
        else:
            yield path


class _MappingEnvSource(EnvSettingsSource):
    """pydantic-settings' env parsing (nesting on ``__``, JSON for complex fields) over a given mapping."""

    def __init__(self, model: type[BaseModel], environ: Mapping[str, str]) -> None:
        self._environ = environ
        # EnvSettingsSource only reads model_fields and model_config, which every BaseModel has.
        settings_cls: type[BaseSettings] = model  # type: ignore[assignment]
        super().__init__(settings_cls, env_nested_delimiter="__", case_sensitive=False)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        return {name.lower(): value for name, value in self._environ.items()}


def _env_layer(model: type[BaseModel], environ: Mapping[str, str]) -> _Layer:
    roots = {name.lower() for name in model.model_fields}
    names = [name for name in environ if name.lower().split("__", 1)[0] in roots]
    config = {name: environ[name] for name in names}
    try:
        data = _MappingEnvSource(model, config)()
    except SettingsError:
        culprit = next((name for name in names if _fails_to_parse(model, name, config[name])), "variables")
        raise ConfigError(
            f"invalid configuration\nenv {culprit}: not valid JSON for a nested setting"
        ) from None
    return _Layer(data, [(tuple(name.lower().split("__")), Source("env", name)) for name in names])


def _fails_to_parse(model: type[BaseModel], name: str, value: str) -> bool:
    try:
        _MappingEnvSource(model, {name: value})()
    except SettingsError:
        return True
    return False


def _override_layer(overrides: Mapping[str, Any]) -> _Layer:
    data: dict[str, Any] = {}
    for key, value in overrides.items():
        nested: Any = value
        for part in reversed(key.split(".")):
            nested = {part: nested}
        data = _merge(data, nested)
    return _Layer(data, [(tuple(key.split(".")), Source("override", key)) for key in overrides])


def _merge(base: Mapping[str, Any], update: Mapping[str, Any], path: KeyPath = ()) -> dict[str, Any]:
    """Deep merge; at :data:`LISTENER_IDS` keys equal under :func:`normalize_id` are one entry."""
    merged = dict(base)
    for key, value in update.items():
        target = _existing_id(merged, key) if path == LISTENER_IDS else key
        if isinstance(value, Mapping):
            current = merged.get(target)
            merged[target] = _merge(current if isinstance(current, Mapping) else {}, value, (*path, target))
        else:
            merged[target] = value
    return merged


def _existing_id(entries: Mapping[str, Any], listener_id: str) -> str:
    wanted = normalize_id(listener_id)
    return next((key for key in entries if normalize_id(key) == wanted), listener_id)


def _describe(
    model: type[BaseModel], error: ErrorDetails, data: Mapping[str, Any], provenance: Provenance
) -> str:
    """``<source>: <key.path>: <reason>`` for one pydantic error."""
    kind = error["type"]
    path = _input_path(error["loc"], data, missing=kind == "missing")
    source = "missing" if kind == "missing" else str(provenance.source_of(path))
    if kind == "extra_forbidden":
        reason = "unknown key" + _did_you_mean(model, path)
    else:
        reason = error["msg"].removeprefix("Value error, ")
        if kind not in ("missing", "value_error") and _may_show(path, error["input"]):
            reason += f" (got {error['input']!r})"
    return f"{source}: {'.'.join(path) or '<root>'}: {reason}"


def _input_path(loc: tuple[int | str, ...], data: Any, *, missing: bool) -> KeyPath:
    """The key path of ``loc`` within the input, without the union-member tags pydantic appends."""
    path: list[str] = []
    for item in loc:
        if isinstance(data, Mapping) and (item in data or missing):
            path.append(str(item))
            data = data.get(item)
        elif isinstance(data, list) and isinstance(item, int) and 0 <= item < len(data):
            path.append(str(item))
            data = data[item]
        else:
            break
    return tuple(path)


def _may_show(path: KeyPath, value: Any) -> bool:
    key = next((part.lower() for part in reversed(path) if not part.isdigit()), "")  # skip list indexes
    if any(word in key for word in _SECRET_WORDS):
        return False
    return isinstance(value, str | int | float | bool) and len(repr(value)) <= _MAX_SHOWN_INPUT


def _did_you_mean(model: type[BaseModel], path: KeyPath) -> str:
    owner = _model_at(model, path[:-1]) if path else None
    if owner is None:
        return ""
    matches = difflib.get_close_matches(path[-1], list(owner.model_fields), n=1)
    return f" (did you mean {matches[0]!r}?)" if matches else ""


def _model_at(model: type[BaseModel], path: KeyPath) -> type[BaseModel] | None:
    current: Any = model
    keys = iter(path)
    for key in keys:
        field_info = current.model_fields.get(key) if _is_model(current) else None
        if field_info is None:
            return None
        current = _unwrap(field_info.annotation)
        if get_origin(current) is dict:
            next(keys, None)  # the element after a mapping is one of its keys, e.g. a listener id
            current = _unwrap(get_args(current)[1])
    return current if _is_model(current) else None


def _unwrap(annotation: Any) -> Any:
    """The model or mapping type inside ``Annotated[...]`` / ``X | None``, else ``annotation``."""
    if get_origin(annotation) is Annotated:
        return _unwrap(get_args(annotation)[0])
    if get_origin(annotation) in (Union, UnionType):
        members = [_unwrap(member) for member in get_args(annotation)]
        return next((m for m in members if _is_model(m) or get_origin(m) is dict), annotation)
    return annotation


def _is_model(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)
