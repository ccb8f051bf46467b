"""A broker that cannot be reached at startup: fail at once with one line, or wait (live, not ready)."""

from __future__ import annotations

import asyncio
import logging
import urllib.request
from typing import Any

import pytest

from listeners import StartupError, rabbit_listener
from listeners.testing import running
from tests.contract.configs import unique
from tests.faults.proxy import FaultProxy
from tests.support.apps import app_with
from tests.support.brokers import free_port

pytestmark = pytest.mark.rabbit


def handlers(queue: str, seen: list[Any]) -> Any:
    class Handlers:
        @rabbit_listener(queue, id="waiting")
        async def handle(self, item: dict[str, Any]) -> None:
            seen.append(item)

    return Handlers()


def status(port: int, path: str) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return int(error.code)


async def test_an_unreachable_broker_fails_startup_at_once_with_a_one_line_reason() -> None:
    with FaultProxy("127.0.0.1", 5672) as proxy:
        proxy.refuse()
        url = f"amqp://guest:guest@{proxy.address}/"
        with pytest.raises(StartupError) as failed:
            async with running(
                app_with(handlers(unique("q"), [])), embedded=False, overrides={"listeners.rabbit.url": url}
            ):
                raise AssertionError("started without a broker")
    reason = str(failed.value)
    assert "\n" not in reason
    assert reason.startswith("cannot start the rabbit transport: ")
    assert proxy.address in reason
    assert "broker_wait" not in reason


async def test_broker_wait_gives_up_after_its_time_naming_the_setting() -> None:
    with FaultProxy("127.0.0.1", 5672) as proxy:
        proxy.refuse()
        overrides = {
            "listeners.rabbit.url": f"amqp://guest:guest@{proxy.address}/",
            "listeners.broker_wait": "1s",
        }
        with pytest.raises(StartupError, match=r"tried for 1s, listeners.broker_wait"):
            async with running(app_with(handlers(unique("q"), [])), embedded=False, overrides=overrides):
                raise AssertionError("started without a broker")


async def test_with_broker_wait_the_app_is_live_not_ready_until_the_broker_answers_then_consumes(
    rabbit: str, cleanup: list[str], caplog: pytest.LogCaptureFixture
) -> None:
    queue = unique("late-broker")
    cleanup.append(queue)
    seen: list[Any] = []
    with FaultProxy("127.0.0.1", 5672) as proxy:
        proxy.refuse()
        overrides = {
            "listeners.rabbit.url": f"amqp://guest:guest@{proxy.address}/",
            "listeners.broker_wait": "30s",
            "listeners.server.port": (port := free_port()),
        }
        app_started = asyncio.Event()
        finished = asyncio.Event()
        apps: list[Any] = []

        async def run() -> None:
            async with running(app_with(handlers(queue, seen)), embedded=False, overrides=overrides) as app:
                apps.append(app)
                app_started.set()
                await finished.wait()

        with caplog.at_level(logging.WARNING, logger="listeners"):
            task = asyncio.ensure_future(run())
            for _ in range(300):
                if "cannot start the rabbit transport yet" in caplog.text:
                    break
                await asyncio.sleep(0.02)
            else:
                raise AssertionError("no retry was logged")
        assert not app_started.is_set()
        assert await asyncio.to_thread(status, port, "/health/live") == 200
        assert await asyncio.to_thread(status, port, "/health/ready") == 503
        proxy.pass_through()
        await asyncio.wait_for(app_started.wait(), 30)
        app = apps[0]
        assert await asyncio.to_thread(status, port, "/health/ready") == 200
        await app.rabbit.publish("", queue, {"n": 1})
        await app.wait_for(lambda: seen == [{"n": 1}], timeout=10)
        finished.set()
        await task
