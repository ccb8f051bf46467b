"""ListenerContainer rules that the transports rely on, seen through a recording settler.

The contract suites cover the same container end to end on the embedded broker; these tests pin the
cases a real broker cannot easily be made to produce on demand (a dead-letter publish that fails, a
pipeline step that raises, the order of ack and handler in at-most-once mode).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import pytest

from listeners import ManualClock, Message
from listeners.message import Headers
from listeners.outcome import ACK, DeadLetter, Defer, Outcome, Retry
from listeners.retry.backoff import BackOffPolicy
from listeners.runtime.container import RUNNERS_AT_ONCE, ListenerContainer
from listeners.runtime.offsets import PartitionOffsets
from listeners.spec import ListenerOptions
from listeners.transport.base import Delivery, DeliverySink, Endpoint, Envelope, PublishReceipt


class RecordingSettler:
    def __init__(
        self, events: list[str], failing_dead_letters: int = 0, immediate_acks: bool = False
    ) -> None:
        self.events = events
        self.failing_dead_letters = failing_dead_letters
        self.immediate_acks = immediate_acks

    def holds_back_finished(self, delivery: Delivery) -> bool:
        return False

    def ack_now(self, delivery: Delivery) -> bool:
        if self.immediate_acks:
            self.events.append(f"ack-now {delivery.message.offset}")
        return self.immediate_acks

    async def ack(self, delivery: Delivery) -> None:
        self.events.append(f"ack {delivery.message.offset}")

    async def release(self, delivery: Delivery) -> None:
        self.events.append(f"release {delivery.message.offset}")

    async def dead_letter(self, delivery: Delivery, error: BaseException) -> None:
        if self.failing_dead_letters:
            self.failing_dead_letters -= 1
            self.events.append(f"dead-letter failed {delivery.message.offset}")
            raise ConnectionError("dead-letter topic unavailable")
        self.events.append(f"dead-letter {delivery.message.offset}")

    async def retry_later(self, delivery: Delivery, retry: Retry) -> None:
        self.events.append(f"retry-later {delivery.message.offset} in {retry.delay}")


class IdleSubscription:
    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def close(self) -> None: ...

    def describe(self) -> str:
        return "test"


class IdleTransport:
    kind = "kafka"
    name = "test"

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def publish(self, envelope: Envelope) -> PublishReceipt:
        raise NotImplementedError

    async def declare(self, endpoint: Endpoint) -> None: ...

    def subscribe(self, endpoint: Endpoint, sink: DeliverySink) -> IdleSubscription:
        return IdleSubscription()

    def describe(self) -> str:
        return "test"


def delivery(offset: int, settler: RecordingSettler, partition: int = 0) -> Delivery:
    msg = Message(
        body=b"{}",
        headers=Headers(),
        destination="t",
        listener_id="l",
        transport="kafka",
        partition=partition,
        offset=offset,
    )
    return Delivery(msg, settler)


async def started(
    pipeline: Callable[[Message], Any], clock: ManualClock, **options: Any
) -> ListenerContainer:
    endpoint = Endpoint("l", "kafka", ListenerOptions(topics=("t",), **{"ordering": "partition", **options}))
    container = ListenerContainer(
        endpoint,
        pipeline,
        IdleTransport(),  # type: ignore[arg-type]
        clock,
        settle_backoff=BackOffPolicy(initial=1.0, multiplier=2.0, maximum=8.0),
    )
    await container.start()
    return container


async def settled(container: ListenerContainer) -> None:
    """Wait (a bounded number of loop turns) until every accepted delivery is settled."""
    for _ in range(1000):
        if container.in_flight == 0:
            return
        await asyncio.sleep(0)
    raise AssertionError(f"{container.in_flight} deliveries still in flight")


async def sleeping(clock: ManualClock, count: int = 1) -> None:
    """Wait (a bounded number of loop turns) until ``count`` waits are registered on the clock."""
    for _ in range(1000):
        if clock.pending == count:
            return
        await asyncio.sleep(0)
    raise AssertionError(f"expected {count} sleeper(s) on the clock, found {clock.pending}")


async def test_failed_dead_letter_publish_leaves_the_message_unsettled_and_backs_off() -> None:
    clock = ManualClock()
    events: list[str] = []
    settler = RecordingSettler(events, failing_dead_letters=2)

    async def pipeline(message: Message) -> Outcome:
        return DeadLetter(ValueError("poison"))

    container = await started(pipeline, clock)
    await container.submit(delivery(0, settler))
    await sleeping(clock)
    assert events == ["dead-letter failed 0"]
    assert container.in_flight == 1, "the source must stay unsettled while the dead letter is unpublished"
    await clock.advance(0.99)
    assert events == ["dead-letter failed 0"], "no tight loop: the next try waits for the back-off"
    await clock.advance(0.01)
    await sleeping(clock)
    assert events == ["dead-letter failed 0", "dead-letter failed 0"]
    await clock.advance(2.0)
    await settled(container)
    assert events == ["dead-letter failed 0", "dead-letter failed 0", "dead-letter 0"]
    assert container.stats.dead_lettered == 1
    assert container.in_flight == 0
    await container.stop(1)


async def test_a_failing_settle_is_logged_with_the_messages_listener_destination_partition_and_offset(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = ManualClock()
    settler = RecordingSettler([], failing_dead_letters=1)

    async def pipeline(message: Message) -> Outcome:
        return DeadLetter(ValueError("poison"))

    container = await started(pipeline, clock)
    with caplog.at_level(logging.ERROR, logger="listeners.container"):
        await container.submit(delivery(5, settler, partition=2))
        await sleeping(clock)
    [line] = [record for record in caplog.records if "could not settle" in record.getMessage()]
    fields = {
        name: getattr(line, name, None) for name in ("listener_id", "destination", "partition", "offset")
    }
    assert fields == {"listener_id": "l", "destination": "t", "partition": 2, "offset": 5}
    assert getattr(line, "attempt", None) == 1
    await container.stop(1)


async def test_stop_during_a_failing_settle_releases_instead_of_waiting() -> None:
    clock = ManualClock()
    events: list[str] = []
    settler = RecordingSettler(events, failing_dead_letters=100)

    async def pipeline(message: Message) -> Outcome:
        return DeadLetter(ValueError("poison"))

    container = await started(pipeline, clock)
    await container.submit(delivery(3, settler))
    await sleeping(clock)
    assert await container.stop(5) is True
    assert events == ["dead-letter failed 3", "release 3"]
    assert container.stats.released == 1


async def test_blocking_retry_and_defer_run_again_in_place_without_settling_in_between() -> None:
    clock = ManualClock()
    events: list[str] = []
    outcomes: list[Outcome] = [Retry(2.0, 2, RuntimeError("x")), Defer(5.0, "busy"), ACK]
    attempts: list[int] = []

    async def pipeline(message: Message) -> Outcome:
        attempts.append(message.attempt)
        return outcomes.pop(0)

    container = await started(pipeline, clock)
    await container.submit(delivery(0, RecordingSettler(events)))
    await sleeping(clock)
    await clock.advance(2.0)
    await sleeping(clock)
    await clock.advance(5.0)
    await settled(container)
    assert attempts == [1, 2, 2], "a deferral runs again without counting an attempt"
    assert events == ["ack 0"]
    assert (container.stats.retried, container.stats.processed) == (1, 1)
    await container.stop(1)


async def test_non_blocking_retry_is_handed_to_the_transport() -> None:
    events: list[str] = []

    async def pipeline(message: Message) -> Outcome:
        return Retry(3.0, 2, RuntimeError("x"), blocking=False)

    container = await started(pipeline, ManualClock())
    await container.submit(delivery(4, RecordingSettler(events)))
    await settled(container)
    assert events == ["retry-later 4 in 3.0"]
    await container.stop(1)


async def test_at_most_once_acknowledges_before_the_handler_runs() -> None:
    events: list[str] = []

    async def pipeline(message: Message) -> Outcome:
        events.append(f"handler {message.offset}")
        return ACK

    container = await started(pipeline, ManualClock(), ack_mode="at_most_once")
    await container.submit(delivery(1, RecordingSettler(events)))
    await settled(container)
    assert events == ["ack 1", "handler 1"]
    await container.stop(1)


async def test_an_exception_escaping_the_pipeline_dead_letters_the_message() -> None:
    events: list[str] = []

    async def pipeline(message: Message) -> Outcome:
        raise RuntimeError("interceptor bug")

    container = await started(pipeline, ManualClock())
    await container.submit(delivery(2, RecordingSettler(events)))
    await settled(container)
    assert events == ["dead-letter 2"]
    await container.stop(1)


async def test_drain_releases_queued_deliveries_and_waits_for_started_ones() -> None:
    events: list[str] = []
    settler = RecordingSettler(events)
    gate = asyncio.Event()

    async def pipeline(message: Message) -> Outcome:
        events.append(f"handler {message.offset}")
        await gate.wait()
        return ACK

    container = await started(pipeline, ManualClock())
    for offset in range(3):
        await container.submit(delivery(offset, settler, partition=0))
    await container.submit(delivery(10, settler, partition=1))
    await asyncio.sleep(0)
    assert sorted(events) == ["handler 0", "handler 10"]
    draining = asyncio.ensure_future(container.drain(lambda message: message.partition == 0, 5))
    await asyncio.sleep(0)
    assert events[-2:] == ["release 1", "release 2"], "queued records of the partition are released at once"
    assert not draining.done(), "the started record of the partition is still running"
    gate.set()
    assert await draining is True
    assert "ack 0" in events
    await container.stop(1)


async def test_submit_waits_at_the_in_flight_bound() -> None:
    gate = asyncio.Event()

    async def pipeline(message: Message) -> Outcome:
        await gate.wait()
        return ACK

    container = await started(pipeline, ManualClock(), max_in_flight=2)
    settler = RecordingSettler([])
    await container.submit(delivery(0, settler))
    await container.submit(delivery(1, settler))
    assert not container.has_capacity()
    third = asyncio.ensure_future(container.submit(delivery(2, settler)))
    await asyncio.sleep(0)
    assert not third.done()
    gate.set()
    await third
    await settled(container)
    assert container.stats.processed == 3
    await container.stop(1)


@pytest.mark.parametrize("immediate", [True, False], ids=["ack-now", "awaited-ack"])
async def test_handled_messages_are_acknowledged_in_lane_order_either_way(immediate: bool) -> None:
    clock = ManualClock()
    events: list[str] = []
    settler = RecordingSettler(events, immediate_acks=immediate)

    async def pipeline(message: Message) -> Outcome:
        events.append(f"handle {message.offset}")
        return ACK

    container = await started(pipeline, clock)
    for offset in range(3):
        await container.submit(delivery(offset, settler))
    await settled(container)
    ack = "ack-now" if immediate else "ack"
    assert events == [f"{step} {offset}" for offset in range(3) for step in ("handle", ack)]
    assert container.stats.processed == 3


async def test_a_run_offered_at_once_takes_what_fits_and_is_handled_in_order() -> None:
    events: list[str] = []
    settler = RecordingSettler(events, immediate_acks=True)
    gate = asyncio.Event()

    async def pipeline(message: Message) -> Outcome:
        await gate.wait()
        events.append(f"handle {message.offset}")
        return ACK

    container = await started(pipeline, ManualClock(), max_in_flight=4)
    assert container.room() == 4
    run = [delivery(offset, settler) for offset in range(6)]

    assert container.offer_run(run) == 4, "a prefix up to the bound"
    assert container.room() == 0
    assert container.offer_run(run[4:]) == 0
    gate.set()
    await settled(container)
    assert container.offer_run(run[4:]) == 2
    await settled(container)
    assert events == [f"{step} {offset}" for offset in range(6) for step in ("handle", "ack-now")]
    await container.stop(1)
    assert container.room() == 0, "nothing is taken once stopping"
    assert container.offer_run([delivery(9, settler)]) == 0


async def test_runs_of_two_partitions_run_side_by_side_each_in_order() -> None:
    events: list[str] = []
    settler = RecordingSettler(events, immediate_acks=True)
    gates = {0: asyncio.Event(), 1: asyncio.Event()}

    async def pipeline(message: Message) -> Outcome:
        assert message.partition is not None
        await gates[message.partition].wait()
        events.append(f"handle {message.partition}@{message.offset}")
        return ACK

    container = await started(pipeline, ManualClock())
    container.offer_run([delivery(offset, settler, partition=0) for offset in range(3)])
    container.offer_run([delivery(offset, settler, partition=1) for offset in range(3)])
    gates[1].set()
    for _ in range(100):
        await asyncio.sleep(0)
    assert [event for event in events if event.startswith("handle")] == [f"handle 1@{n}" for n in range(3)]
    gates[0].set()
    await settled(container)
    assert [event for event in events if event.startswith("handle 0")] == [f"handle 0@{n}" for n in range(3)]
    await container.stop(1)


class LogSettler(RecordingSettler):
    """A log transport's settler: offsets of one partition, committable only up to the first unfinished."""

    def __init__(self, events: list[str]) -> None:
        super().__init__(events, immediate_acks=True)
        self.offsets = PartitionOffsets(0)

    def ack_now(self, delivery: Delivery) -> bool:
        assert delivery.message.offset is not None
        self.offsets.finish(delivery.message.offset)
        return super().ack_now(delivery)

    def holds_back_finished(self, delivery: Delivery) -> bool:
        assert delivery.message.offset is not None
        return self.offsets.finished_after(delivery.message.offset)


def keyed(offset: int, key: bytes, settler: LogSettler) -> Delivery:
    settler.offsets.start(offset)
    message = Message(b"{}", Headers(), "t", "l", "kafka", key=key, partition=0, offset=offset)
    return Delivery(message, settler)


@pytest.mark.parametrize("later", ["finished", "running"])
async def test_stop_runs_a_waiting_record_that_a_later_record_of_its_partition_went_past(later: str) -> None:
    events: list[str] = []
    settler = LogSettler(events)
    gates = {0: asyncio.Event(), 2: asyncio.Event()}
    if later == "finished":
        gates[2].set()

    async def pipeline(message: Message) -> Outcome:
        assert message.offset is not None
        if message.offset in gates:
            await gates[message.offset].wait()
        events.append(f"handle {message.offset}")
        return ACK

    container = await started(pipeline, ManualClock(), ordering="key")
    for offset, key in ((0, b"a"), (1, b"a"), (2, b"b"), (3, b"a")):
        assert container.offer(keyed(offset, key, settler))
    if later == "finished":
        for _ in range(100):
            await asyncio.sleep(0)
        assert "handle 2" in events
    stopping = asyncio.ensure_future(container.stop(5))
    for _ in range(20):
        await asyncio.sleep(0)
    gates[0].set()
    gates[2].set()
    assert await stopping
    handled = [event for event in events if event.startswith("handle")]
    assert sorted(handled) == ["handle 0", "handle 1", "handle 2"], "1 ran: 2 went past it"
    assert handled.index("handle 0") < handled.index("handle 1"), "key order kept"
    assert "release 3" in events, "3 is after everything that ran: released"
    assert settler.offsets.committable == 3, "nothing handled is delivered again"


async def test_stop_releases_the_waiting_records_of_a_partition_lane() -> None:
    events: list[str] = []
    settler = LogSettler(events)
    gate = asyncio.Event()

    async def pipeline(message: Message) -> Outcome:
        await gate.wait()
        events.append(f"handle {message.offset}")
        return ACK

    container = await started(pipeline, ManualClock())
    for offset in range(3):
        assert container.offer(keyed(offset, b"a", settler))
    for _ in range(10):
        await asyncio.sleep(0)
    stopping = asyncio.ensure_future(container.stop(5))
    for _ in range(10):
        await asyncio.sleep(0)
    gate.set()
    assert await stopping
    assert [event for event in events if event.startswith("handle")] == ["handle 0"]
    assert "release 1" in events
    assert "release 2" in events
    assert settler.offsets.committable == 1


async def test_every_key_lane_whose_handler_waits_runs_side_by_side() -> None:
    """Lane runners are shared, yet with handlers that wait every key's lane starts (many more lanes
    than runners are made at once): none waits for another key's handler."""
    events: list[str] = []
    settler = RecordingSettler(events, immediate_acks=True)
    gate = asyncio.Event()
    started_keys: set[bytes] = set()
    lanes = RUNNERS_AT_ONCE * 20

    async def pipeline(message: Message) -> Outcome:
        assert message.key is not None
        started_keys.add(message.key)
        await gate.wait()
        return ACK

    container = await started(pipeline, ManualClock(), ordering="key", max_in_flight=lanes)
    for index in range(lanes):
        message = Message(b"{}", Headers(), "t", "l", "kafka", key=b"k%d" % index, partition=0, offset=index)
        assert container.offer(Delivery(message, settler))
    for _ in range(100):
        await asyncio.sleep(0)
    assert len(started_keys) == lanes, "every key's handler started before any finished"
    gate.set()
    await settled(container)
    assert container.stats.processed == lanes
    await container.stop(1)


async def test_fast_handlers_of_many_keys_share_a_few_runners() -> None:
    """Handlers that do not wait: the lanes of a whole burst of keys are run by a few tasks, not one
    task per key (a task costs more than such a message), in arrival order."""
    events: list[str] = []
    settler = RecordingSettler(events, immediate_acks=True)
    handled: list[int] = []
    tasks: set[asyncio.Task[Any] | None] = set()

    async def pipeline(message: Message) -> Outcome:
        assert message.offset is not None
        handled.append(message.offset)
        tasks.add(asyncio.current_task())
        return ACK

    lanes = 500
    container = await started(pipeline, ManualClock(), ordering="key", max_in_flight=lanes)
    for index in range(lanes):
        message = Message(b"{}", Headers(), "t", "l", "kafka", key=b"k%d" % index, partition=0, offset=index)
        assert container.offer(Delivery(message, settler))
    await settled(container)
    assert handled == list(range(lanes))
    assert len(tasks) <= RUNNERS_AT_ONCE
    await container.stop(1)
