"""Resolving ``module:attribute`` to a container, with errors that name the module and the cause."""

from __future__ import annotations

import importlib
import inspect
import sys
import traceback
from pathlib import Path
from typing import Any

from listeners.exceptions import StartupError


def load_container(target: str, app_dir: str | Path = ".") -> Any:
    """Import ``target`` and return the container it names.

    The attribute may be a container instance, a container class (instantiated here) or a factory
    returning a container. ``app_dir`` is put first on ``sys.path``, like uvicorn's ``--app-dir``.
    """
    module_name, colon, attribute = target.partition(":")
    if not colon or not module_name or not attribute:
        raise StartupError(f"{target!r} is not an import string; use module:attribute, e.g. app:container")
    directory = str(Path(app_dir).resolve())
    if directory not in sys.path:
        sys.path.insert(0, directory)
    module = _import(module_name, directory)
    value: Any = module
    for part in attribute.split("."):
        if not hasattr(value, part):
            raise StartupError(f"module {module_name!r} has no attribute {attribute!r}")
        value = getattr(value, part)
    return _as_container(value, target)


def _import(module_name: str, directory: str) -> Any:
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        if error.name is not None and (module_name == error.name or module_name.startswith(error.name + ".")):
            raise StartupError(
                f"cannot import module {module_name!r}: no such module (app dir {directory})"
            ) from None
        raise StartupError(f"importing module {module_name!r} failed: {_cause(error)}") from error
    except Exception as error:
        raise StartupError(f"importing module {module_name!r} failed: {_cause(error)}") from error


def _cause(error: BaseException) -> str:
    frames = traceback.extract_tb(error.__traceback__)
    where = f" ({frames[-1].filename}:{frames[-1].lineno})" if frames else ""
    return f"{type(error).__name__}: {error}{where}"


def _as_container(value: Any, target: str) -> Any:
    is_factory = callable(value) and not _is_container(value) and not inspect.isclass(value)
    if _is_container_class(value) or is_factory:
        try:
            value = value()
        except Exception as error:
            raise StartupError(f"{target}: creating the container failed: {_cause(error)}") from error
    if not _is_container(value):
        raise StartupError(f"{target} is {type(value).__name__}, not a dependency-injector container")
    if "loaded_settings" not in value.providers:
        raise StartupError(f"{target} is not a ListenersContainer; subclass starter.ListenersContainer")
    return value


def _is_container(value: Any) -> bool:
    return getattr(value, "__IS_CONTAINER__", False) is True and not inspect.isclass(value)


def _is_container_class(value: Any) -> bool:
    return inspect.isclass(value) and getattr(value, "__IS_CONTAINER__", False) is True
