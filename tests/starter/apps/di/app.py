"""A container exercising every injection form."""

from __future__ import annotations

from dependency_injector import containers, providers

from starter import ListenersContainer
from tests.starter.apps.di.objects import ConstructorInjected, MethodInjected, MethodInjectedWithoutDecorator
from tests.starter.apps.di.services import Greeter, Recorder


class Container(ListenersContainer):
    wiring_config = containers.WiringConfiguration(modules=[".handlers"])

    recorder = providers.Singleton(Recorder)
    greeter = providers.Factory(Greeter)
    constructor_injected = providers.Singleton(ConstructorInjected, recorder=recorder)
    method_injected = providers.Factory(MethodInjected)
    method_plain = providers.Singleton(MethodInjectedWithoutDecorator)
