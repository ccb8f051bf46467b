"""Not wired by the container: listener classes whose instances come from providers."""

from __future__ import annotations

from dependency_injector.wiring import Provide, inject

from listeners import rabbit_listener
from tests.starter.apps.di.services import Greeter, Recorder


class ConstructorInjected:
    def __init__(self, recorder: Recorder) -> None:
        self._recorder = recorder

    @rabbit_listener("di-constructor", id="constructor")
    async def on_name(self, name: str) -> None:
        self._recorder.record("constructor", name)


class MethodInjected:
    @rabbit_listener("di-method", id="method")
    @inject
    async def on_name(
        self, name: str, greeter: Greeter = Provide["greeter"], recorder: Recorder = Provide["recorder"]
    ) -> None:
        recorder.record("method", greeter.greet(name))


class MethodInjectedWithoutDecorator:
    @rabbit_listener("di-method-plain", id="method_plain")
    def on_name(self, name: str, recorder: Recorder = Provide["recorder"]) -> None:
        recorder.record("method_plain", name)
