"""Finding listeners: functions in the modules a container wires, and methods of objects its providers make.

Discovery only reads declarations; it instantiates nothing (``listeners list`` relies on that).
Binding a declaration to a callable happens at startup, after wiring has patched the functions, so
``Provide[...]`` parameters are injected whether or not the handler carries ``@inject``.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from dependency_injector import providers

from listeners.decorators import forward_target, listener_specs
from listeners.exceptions import StartupError
from listeners.runtime.parameters import uses_injection
from listeners.spec import ForwardTarget, ListenerSpec


@dataclass(frozen=True)
class Declaration:
    """One declared listener and where its handler lives."""

    spec: ListenerSpec
    forward: ForwardTarget | None
    attribute: str
    module: ModuleType | None = None
    provider: providers.Provider[Any] | None = None
    provider_name: str | None = None
    owner_class: type | None = None

    @property
    def is_method(self) -> bool:
        return self.owner_class is not None

    def describe_owner(self) -> str:
        """``module samples.orders.handlers`` or ``provider 'notifier' (samples.orders.Notifier)``."""
        if self.module is not None:
            return f"module {self.module.__name__}"
        cls = self.owner_class
        assert cls is not None
        return f"provider {self.provider_name!r} ({cls.__module__}.{cls.__qualname__})"

    def unbound_function(self) -> Callable[..., Any]:
        """The handler as declared (before binding to an instance), for signature checks."""
        owner: Any = self.module if self.module is not None else self.owner_class
        function: Callable[..., Any] = (
            inspect.getattr_static(owner, self.attribute)
            if self.is_method
            else getattr(owner, self.attribute)
        )
        return function

    async def bind(self) -> Callable[..., Any]:
        """The callable to invoke: the wired module function, or the method of the provided object."""
        if self.module is not None:
            return getattr(self.module, self.attribute)  # type: ignore[no-any-return]
        assert self.provider is not None
        instance = self.provider()
        if inspect.isawaitable(instance):
            instance = await instance
        return getattr(instance, self.attribute)  # type: ignore[no-any-return]


def wired_modules(container: Any) -> list[ModuleType]:
    """Modules the container wired, with every module of the packages it wired."""
    if not getattr(container, "wired_to_modules", None) and not getattr(container, "wired_to_packages", None):
        container.wire()
    modules: dict[str, ModuleType] = {}
    for module in container.wired_to_modules:
        modules[module.__name__] = module
    for package in container.wired_to_packages:
        for module in _walk(package):
            modules[module.__name__] = module
    return list(modules.values())


def discover(container: Any) -> list[Declaration]:
    """Every listener the container makes available, in a stable order."""
    declarations: list[Declaration] = []
    provided_classes: set[type] = set()
    for name, provider in _providers(container):
        cls = _provided_class(provider)
        if cls is None:
            continue
        for attribute, spec, forward in _class_listeners(cls):
            provided_classes.add(cls)
            declarations.append(
                Declaration(spec, forward, attribute, provider=provider, provider_name=name, owner_class=cls)
            )
    for module in wired_modules(container):
        for attribute, member in vars(module).items():
            specs = listener_specs(member)
            if specs and _defined_in(member, module):
                declarations.extend(
                    Declaration(spec, forward_target(member), attribute, module=module) for spec in specs
                )
            elif inspect.isclass(member) and _defined_in(member, module):
                _require_provider(member, provided_classes)
    return declarations


def modules_needing_wiring(declarations: list[Declaration], container: Any) -> list[ModuleType]:
    """Modules of provider-made listener classes that use ``Provide[...]`` but were not wired."""
    wired = {module.__name__ for module in wired_modules(container)}
    needed: dict[str, ModuleType] = {}
    for declaration in declarations:
        cls = declaration.owner_class
        if cls is not None and cls.__module__ not in wired and uses_injection(declaration.unbound_function()):
            needed[cls.__module__] = sys.modules[cls.__module__]
    return list(needed.values())


def _providers(container: Any) -> Iterator[tuple[str, providers.Provider[Any]]]:
    names = {id(provider): name for name, provider in container.providers.items()}
    for provider in container.traverse():
        yield names.get(id(provider), repr(provider)), provider


def _provided_class(provider: providers.Provider[Any]) -> type | None:
    if isinstance(provider, providers.Object):
        value = provider()
        return type(value) if _class_listeners(type(value)) else None
    provides = getattr(provider, "provides", None)
    if isinstance(provider, (providers.Delegate, providers.Dependency)) or not inspect.isclass(provides):
        return None
    return provides


def _class_listeners(cls: type) -> list[tuple[str, ListenerSpec, ForwardTarget | None]]:
    found = []
    for attribute in dir(cls):
        member = inspect.getattr_static(cls, attribute, None)
        for spec in listener_specs(member):
            found.append((attribute, spec, forward_target(member)))
    return found


def _require_provider(cls: type, provided: set[type]) -> None:
    if not _class_listeners(cls) or any(issubclass(candidate, cls) for candidate in provided):
        return
    raise StartupError(
        f"class {cls.__module__}.{cls.__qualname__} declares listener methods but no provider of the "
        "container makes its instances; add one, e.g. providers.Singleton(" + cls.__qualname__ + ", ...)"
    )


def _defined_in(member: Any, module: ModuleType) -> bool:
    return getattr(member, "__module__", None) == module.__name__


def _walk(package: ModuleType) -> Iterator[ModuleType]:
    yield package
    path = getattr(package, "__path__", None)
    if path is None:
        return
    for info in pkgutil.walk_packages(path, prefix=package.__name__ + "."):
        yield importlib.import_module(info.name)
