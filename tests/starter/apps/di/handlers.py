"""Wired module: function listeners with and without @inject, in both decorator orders."""

from __future__ import annotations

from dependency_injector.wiring import Provide, inject

from listeners import kafka_listener
from tests.starter.apps.di.services import Greeter, Recorder


@kafka_listener("di-explicit", id="explicit")
@inject
async def with_inject(
    name: str, greeter: Greeter = Provide["greeter"], recorder: Recorder = Provide["recorder"]
) -> None:
    recorder.record("explicit", greeter.greet(name))


@inject
@kafka_listener("di-outer", id="outer")
async def inject_outermost(name: str, recorder: Recorder = Provide["recorder"]) -> None:
    recorder.record("outer", name)


@kafka_listener("di-implicit", id="implicit")
def without_inject(
    name: str, greeter: Greeter = Provide["greeter"], recorder: Recorder = Provide["recorder"]
) -> None:
    recorder.record("implicit", greeter.greet(name))
