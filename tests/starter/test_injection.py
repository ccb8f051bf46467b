"""dependency-injector in handlers: Provide[...] works for functions and methods, with or without @inject."""

from __future__ import annotations

from listeners.testing import running
from tests.starter.apps.di.app import Container


async def test_every_injection_form_reaches_its_handler() -> None:
    container = Container()
    async with running(container) as app:
        for topic in ("di-explicit", "di-outer", "di-implicit"):
            await app.kafka.send(topic, "ada")
        for queue in ("di-constructor", "di-method", "di-method-plain"):
            await app.rabbit.publish("", queue, "ada")
        recorder = container.recorder()
        await app.wait_for(lambda: len(recorder.calls) == 6, message="six handler calls")
    assert sorted(recorder.calls) == [
        ("constructor", "ada"),
        ("explicit", "hello ada"),
        ("implicit", "hello ada"),
        ("method", "hello ada"),
        ("method_plain", "ada"),
        ("outer", "ada"),
    ]


async def test_listener_objects_come_from_their_providers() -> None:
    container = Container()
    async with running(container) as app:
        await app.rabbit.publish("", "di-constructor", "grace")
        await app.wait_for(lambda: container.recorder().calls == [("constructor", "grace")])
    # The Singleton provider made the listener object, with its own dependency injected.
    assert container.constructor_injected()._recorder is container.recorder()
