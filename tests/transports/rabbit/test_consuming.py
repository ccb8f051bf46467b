"""Consuming from RabbitMQ: competing consumers, the prefetch bound, at-most-once, reconnects, crashes."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from listeners import Message, rabbit_listener
from listeners.testing import running
from tests.contract.configs import unique
from tests.support.apps import app_with
from tests.transports.rabbit.helpers import close_all_connections, queue_state

pytestmark = pytest.mark.rabbit
REPO = Path(__file__).resolve().parents[3]


class Worker:
    def __init__(self) -> None:
        self.done: list[str] = []
        self.inside = 0
        self.peak = 0
        self.gate: asyncio.Event | None = None
        self.free = 0  # handlers that pass before the gate holds the rest

    async def take(self, text: str) -> None:
        self.inside += 1
        self.peak = max(self.peak, self.inside)
        if self.gate is not None and self.free <= 0:
            await self.gate.wait()
        self.free -= 1
        self.inside -= 1
        self.done.append(text)


def worker(queue: str, **options: object) -> Worker:
    class Declared(Worker):
        @rabbit_listener(queue, id="worker", **options)  # type: ignore[arg-type]
        async def handle(self, text: str) -> None:
            await self.take(text)

    return Declared()


async def test_competing_consumers_in_two_apps_each_message_once(rabbit: str) -> None:
    queue = unique("compete")
    one, two = worker(queue, prefetch=5), worker(queue, prefetch=5)
    overrides = {"listeners.rabbit.url": rabbit}
    async with (
        running(app_with(w=one), embedded=False, overrides=overrides) as first,
        running(app_with(w=two), embedded=False, overrides=overrides),
    ):
        for n in range(200):
            await first.rabbit.publish("", queue, f"m{n}")
        await first.wait_for(lambda: len(one.done) + len(two.done) == 200, timeout=20)
    counts = Counter(one.done + two.done)
    assert set(counts) == {f"m{n}" for n in range(200)}
    assert max(counts.values()) == 1
    assert one.done
    assert two.done
    assert await queue_state(rabbit, queue) == (0, 0)


async def test_published_messages_carry_their_send_time_for_time_lag(rabbit: str, cleanup: list[str]) -> None:
    queue = unique("stamped")
    cleanup.append(queue)
    stamps: list[float | None] = []

    class Stamps:
        @rabbit_listener(queue, id="stamps")
        async def handle(self, text: str, message: Message) -> None:
            stamps.append(message.timestamp)

    async with running(app_with(Stamps()), embedded=False, overrides={"listeners.rabbit.url": rabbit}) as app:
        before = time.time()
        await app.rabbit.publish("", queue, "stamped")
        await app.wait_for(lambda: stamps, timeout=10)
    [stamp] = stamps
    assert stamp is not None
    assert int(before) <= stamp <= time.time(), "AMQP timestamps are whole seconds, never in the future"


async def test_a_stuck_handler_does_not_hold_back_the_rest_of_the_prefetch_window(
    rabbit: str, cleanup: list[str]
) -> None:
    queue = unique("stuck-head")
    cleanup.append(queue)
    stuck = asyncio.Event()
    done: list[str] = []

    class Handlers:
        @rabbit_listener(queue, id="stuck", prefetch=8)
        async def handle(self, text: str) -> None:
            if text == "m0":
                await stuck.wait()
            done.append(text)

    async with running(
        app_with(Handlers()), embedded=False, overrides={"listeners.rabbit.url": rabbit}
    ) as app:
        for n in range(60):
            await app.rabbit.publish("", queue, f"m{n}")
        # Without acks for what finished behind m0, the 8-message window would fill and stay full.
        await app.wait_for(lambda: len(done) == 59, timeout=20)
        assert await queue_state(rabbit, queue) == (0, 1), "nothing waits in the queue; one consumer"
        stuck.set()
        await app.wait_for(lambda: len(done) == 60, timeout=10)
        await app.wait_for(lambda: app.stats("stuck").processed == 60, timeout=10)
    assert sorted(done) == sorted(f"m{n}" for n in range(60))
    assert await queue_state(rabbit, queue) == (0, 0)


async def test_prefetch_bounds_the_unacknowledged_messages_of_each_consumer(rabbit: str) -> None:
    queue = unique("prefetch")
    box = worker(queue, prefetch=4, concurrency=2, ordering="none", max_in_flight=100)
    box.gate = asyncio.Event()
    async with running(app_with(w=box), embedded=False, overrides={"listeners.rabbit.url": rabbit}) as app:
        for n in range(30):
            await app.rabbit.publish("", queue, f"m{n}")
        await app.wait_for(lambda: box.inside == 8, timeout=10)
        ready, consumers = await queue_state(rabbit, queue)
        assert (ready, consumers) == (22, 2), "two consumers hold four unacknowledged messages each"
        box.gate.set()
        await app.wait_for(lambda: len(box.done) == 30, timeout=10)
    assert box.peak == 8


async def test_at_most_once_acknowledges_on_delivery(rabbit: str) -> None:
    queue = unique("auto-ack")
    gate = asyncio.Event()

    class Fragile:
        seen: list[str] = []

        @rabbit_listener(queue, id="fragile", ack_mode="at_most_once")
        async def handle(self, text: str) -> None:
            self.seen.append(text)
            await gate.wait()
            raise RuntimeError("lost on purpose")

    async with running(
        app_with(f=Fragile()), embedded=False, overrides={"listeners.rabbit.url": rabbit}
    ) as app:
        await app.rabbit.publish("", queue, "once")
        await app.wait_for(lambda: Fragile.seen == ["once"], timeout=10)
        assert await queue_state(rabbit, queue) == (0, 1), "already acknowledged while the handler runs"
        gate.set()
        await app.wait_for(lambda: app.stats("fragile").discarded == 1)
    assert await queue_state(rabbit, queue) == (0, 0), "not requeued"


async def test_a_forced_reconnect_mid_stream_loses_nothing_and_consuming_resumes(
    rabbit: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="listeners")
    queue = unique("reconnect")
    box = worker(queue, prefetch=10, ordering="none")
    box.gate, box.free = asyncio.Event(), 10
    overrides = {"listeners.rabbit.url": rabbit, "listeners.rabbit.reconnect.initial": "100ms"}
    async with running(app_with(w=box), embedded=False, overrides=overrides) as app:
        for n in range(100):
            await app.rabbit.publish("", queue, f"before-{n}")
        await app.wait_for(lambda: len(box.done) == 10 and box.inside == 10, timeout=10)
        # Ten messages are in handlers, unacknowledged, when the broker drops every connection.
        await asyncio.to_thread(close_all_connections, "test: forced reconnect")
        await app.wait_for(lambda: f"consuming {queue!r} again" in caplog.text, timeout=20)
        box.gate.set()
        for n in range(50):
            await app.rabbit.publish("", queue, f"after-{n}")
        expected = {f"before-{n}" for n in range(100)} | {f"after-{n}" for n in range(50)}
        await app.wait_for(
            lambda: set(box.done) >= expected, timeout=30, message="every message after reconnect"
        )
        _, consumers = await queue_state(rabbit, queue)
    assert set(box.done) == expected, "nothing lost (messages in flight at the cut are redelivered)"
    assert len(box.done) > len(expected), "the ten in flight at the cut ran again (at-least-once)"
    assert consumers == 1, "the consumer is back on the queue"
    assert "reconnected to RabbitMQ" in caplog.text


def start_recorder(rabbit: str, queue: str, record: Path, tmp: Path, hold: float) -> subprocess.Popen[bytes]:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("LISTENERS")},
        "LISTENERS__RABBIT__URL": rabbit,
        "LISTENERS__LISTENER__RECORDER__QUEUE": queue,
        "RECORDER_FILE": str(record),
        "RECORDER_HOLD": str(hold),
    }
    return subprocess.Popen(
        [sys.executable, "-m", "listeners", "run", "tests.transports.rabbit.apps.recorder.app:container",
         "--app-dir", str(REPO), "--config-dir", str(tmp)],
        cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip


@pytest.mark.slow
async def test_a_killed_consumer_process_unacked_messages_go_to_another(rabbit: str, tmp_path: Path) -> None:
    queue = unique("killed")
    await declare_queue(rabbit, queue)
    overrides = {"listeners.rabbit.url": rabbit}
    async with running(app_with(), embedded=False, overrides=overrides) as app:
        for n in range(30):
            await app.rabbit.publish("", queue, f"m{n}")
    # The first process takes up to 20 messages (its prefetch), holds them, and is killed holding them.
    record = tmp_path / "first.txt"
    first = start_recorder(rabbit, queue, record, tmp_path, hold=60)
    try:
        await wait_until(
            lambda: record.exists() and record.read_text().count("start") == 20, "20 held messages"
        )
        first.send_signal(signal.SIGKILL)
        first.wait(10)
    finally:
        if first.poll() is None:
            first.kill()
    held = {line.split()[1] for line in record.read_text().splitlines()}
    survivor = worker(queue, prefetch=50)
    async with running(app_with(w=survivor), embedded=False, overrides=overrides) as app:
        await app.wait_for(lambda: len(survivor.done) == 30, timeout=20, message="all 30 messages")
    assert sorted(survivor.done) == sorted(f"m{n}" for n in range(30)), "each once, the held ones included"
    assert len(held) == 20
    assert held < set(survivor.done)


async def declare_queue(url: str, queue: str) -> None:
    import aio_pika

    connection = await aio_pika.connect(url)
    try:
        await (await connection.channel()).declare_queue(queue, durable=True)
    finally:
        await connection.close()


async def wait_until(condition: object, what: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


async def test_acks_are_coalesced_into_fewer_frames_than_messages(
    rabbit: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from aiormq.channel import Channel

    frames: list[tuple[int, bool]] = []
    original = Channel.basic_ack

    async def counting(self: Channel, delivery_tag: int, multiple: bool = False, wait: bool = True) -> None:
        frames.append((delivery_tag, multiple))
        await original(self, delivery_tag, multiple=multiple, wait=wait)

    monkeypatch.setattr(Channel, "basic_ack", counting)
    queue = unique("coalesce")
    await declare_queue(rabbit, queue)
    box = worker(queue, prefetch=100, ordering="none")
    async with running(app_with(), embedded=False, overrides={"listeners.rabbit.url": rabbit}) as app:
        for n in range(500):
            await app.rabbit.publish("", queue, f"m{n}")
    async with running(app_with(w=box), embedded=False, overrides={"listeners.rabbit.url": rabbit}) as app:
        await app.wait_for(lambda: len(box.done) == 500, timeout=20)
    assert await queue_state(rabbit, queue) == (0, 0), "every message acknowledged"
    assert frames[-1][0] == 500
    assert len(frames) < 250, f"{len(frames)} ack frames for 500 messages"
