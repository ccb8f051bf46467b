"""One Kafka consumer of a listener: fetch loop, backlog, backpressure by pausing, commits, rebalances.

The fetch loop never waits for a handler. Fetched records wait in a backlog bounded by one poll
(``max_poll_records``) and are handed to the listener container while it has room. When a whole
``poll_timeout`` passes without room (slow handlers), every assigned partition is paused and the
loop keeps polling, so heartbeats and ``max_poll_interval_ms`` stay satisfied even under long
handlers (aiokafka#848); it resumes once there is room. Finished offsets are committed (see
:mod:`listeners.kafka.commits`) every ``commit_interval`` or after ``commit_count`` finished
records, on revoke (after draining that partition's in-flight records within ``revoke_timeout``),
and before the consumer stops.

A process that did not run for longer than the group's session timeout (stopped, swapped out, its event
loop blocked) has most likely been replaced in the group while it could not say otherwise; records it
fetched just before or right after would be handled twice. The fetch loop notices the gap (a watchdog
ticks a few times per session timeout) before it hands anything out, hands out nothing more, and asks
aiokafka to rejoin: the revoke that follows releases what had not started, and the next assignment
resumes.

Besides the listener's topics the consumer reads their retry and delay topics
(:mod:`listeners.kafka.topics`), whose records wait for their due time with their partition paused
(:mod:`listeners.kafka.pause_until_due`). What it hands out is settled by a
:class:`~listeners.kafka.settling.RecordSettler`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.structs import ConsumerRecord

from listeners.kafka.clients import session_timeout
from listeners.kafka.commits import HeldPartition, commit_fetched, commit_finished
from listeners.kafka.config import KafkaConfig
from listeners.kafka.delay import record_topic
from listeners.kafka.deliveries import RecordDelivery
from listeners.kafka.errors import translate
from listeners.kafka.pause_until_due import PauseUntilDue
from listeners.kafka.settling import RecordSettler
from listeners.kafka.topics import ListenerTopics
from listeners.message import batch_message
from listeners.retry.backoff import BackOffPolicy
from listeners.runtime.offsets import PartitionOffsets
from listeners.transport.base import Delivery, DeliverySink, Endpoint

if TYPE_CHECKING:
    from listeners.kafka.transport import KafkaTransport

log = logging.getLogger("listeners.kafka")

FAILURE_BACKOFF = BackOffPolicy(initial=0.2, multiplier=2.0, maximum=5.0, jitter=0.1)
"""Back-off of the fetch loop while the broker fails: it retries, never spins, never gives up."""


@dataclass(eq=False, slots=True)
class _Run:
    """Records of one partition from one poll, waiting to be handed out from ``next`` on."""

    tp: TopicPartition
    records: list[ConsumerRecord[bytes, bytes]]
    next: int = 0


class ConsumerWorker(ConsumerRebalanceListener):  # type: ignore[misc]
    """One AIOKafkaConsumer in the listener's group: fetches, hands out and commits its records."""

    def __init__(
        self,
        consumer: AIOKafkaConsumer,
        endpoint: Endpoint,
        sink: DeliverySink,
        config: KafkaConfig,
        transport: KafkaTransport,
    ) -> None:
        self._consumer = consumer
        self._endpoint = endpoint
        self._sink = sink
        self._config = config
        self._transport = transport
        self._at_most_once = endpoint.options.ack_mode == "at_most_once"
        self._batch = endpoint.options.batch
        self._topics = ListenerTopics(endpoint)
        self._settler = RecordSettler(endpoint, transport, self._topics, read_again=self._read_again)
        self._paused_until_due = PauseUntilDue(consumer, self._topics)
        self._held: dict[TopicPartition, HeldPartition] = {}
        self._assigned: set[TopicPartition] = set()
        self._backlog: deque[_Run] = deque()
        self._paused_by_us: set[TopicPartition] = set()  # for backpressure, not until due
        self._last_commit = 0.0
        self._last_poll = 0.0
        self._fetching = False
        self._joined = False  # between an assignment (even an empty one) and the next revoke
        self._failing = False  # the last poll failed (broker unreachable, ...)
        self._out_of_group = False  # the coordinator was lost (logged once until it is back)
        self._rejoining = False  # asked to rejoin after a stall, until the next assignment
        self._session = session_timeout(config)
        self._alive_at = time.monotonic()  # the watchdog's last tick
        self._task: asyncio.Task[None] | None = None
        self._watchdog: asyncio.Task[None] | None = None

    @property
    def consuming(self) -> bool:
        """Fetching, a member of the group with its assignment, and the last poll succeeded."""
        return self._fetching and self._joined and not self._failing and self._in_group()

    def _in_group(self) -> bool:
        """Whether the group coordinator is known. aiokafka marks it dead when heartbeats fail for a
        session or its connection breaks, and keeps retrying without raising; until it is back,
        records handed out could be another member's. (Before the first assignment it is not known
        yet either: that is joining, not lost, and ``_joined`` is still False.)"""
        if self._rejoining:
            return False
        coordinator = getattr(self._consumer, "_coordinator", None)
        if coordinator is None or not hasattr(coordinator, "coordinator_id"):
            return True  # no group coordination to lose (or an aiokafka without these internals)
        return coordinator.coordinator_id is not None

    def _check_stall(self) -> None:
        """Rejoin if the process did not run for longer than the session timeout (see the module
        docstring); from then on :meth:`_in_group` is False until the next assignment."""
        stalled = time.monotonic() - self._alive_at
        if stalled <= self._session or not self._joined or self._rejoining:
            return
        coordinator = getattr(self._consumer, "_coordinator", None)
        if coordinator is None or not hasattr(coordinator, "request_rejoin"):
            return  # no group to rejoin (or an aiokafka without it): its heartbeat finds out
        coordinator.request_rejoin()
        self._rejoining = True
        log.warning(
            "listener %s: this process did not run for %.1fs, longer than the session timeout (%.3gs): "
            "the group may have handed its partitions to another member; handing out nothing until it "
            "has rejoined group %s",
            self._endpoint.listener_id, stalled, self._session, self._endpoint.group_id,
        )  # fmt: skip

    async def _watch_for_stalls(self) -> None:
        """Tick a few times per session timeout; a tick that comes late by more than the session
        timeout means the process did not run meanwhile."""
        tick = self._session / 4
        while True:
            await asyncio.sleep(tick)
            self._check_stall()
            self._alive_at = time.monotonic()

    def consumer_lag(self) -> Iterator[tuple[str, int, int]]:
        """``(topic, partition, high watermark - committed offset)`` of the assigned partitions whose
        high watermark a fetch has reported; a partition nothing was handed out from yet counts from
        its first waiting record, or as caught up when none waits."""
        highwater = self._consumer.highwater
        for tp in list(self._assigned):
            high = highwater(tp)
            if high is None:
                continue
            state = self._held.get(tp)
            if state is not None:
                done = state.committed
            else:
                waiting = next((run.records[run.next].offset for run in self._backlog if run.tp == tp), None)
                done = high if waiting is None else waiting
            yield tp.topic, tp.partition, max(0, high - done)

    # lifecycle ------------------------------------------------------------------------------------

    async def start(self, delay_topics: Mapping[str, str] | None = None) -> None:
        """Join the group on the listener's topics, their retry topics and ``delay_topics``
        (``{delay topic: topic}``, those that exist); a pattern covers its delay topics itself."""
        try:
            await self._consumer.start()
        except Exception as error:
            raise translate(error, f"starting a consumer of listener {self._endpoint.listener_id}") from error
        self._topics.subscribe(self._consumer, delay_topics, listener=self)
        self._fetching = True
        self._alive_at = time.monotonic()
        self._watchdog = asyncio.ensure_future(self._watch_for_stalls())
        self._task = asyncio.ensure_future(self._fetch_loop())

    async def stop_fetching(self) -> None:
        """Stop polling; records not yet handed out are dropped (they are not committed)."""
        self._fetching = False
        for task in (self._task, self._watchdog):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._backlog.clear()

    async def close(self) -> None:
        """Commit what finished (aiokafka does not call revoke on stop), then leave the group."""
        await self.stop_fetching()
        await self._commit(self._held.values(), reason="stop")
        for state in self._held.values():
            state.active = False
        self._held.clear()
        await self._consumer.stop()

    # fetching -------------------------------------------------------------------------------------

    async def _fetch_loop(self) -> None:
        failures = FAILURE_BACKOFF.execution()
        while self._fetching:
            try:
                await self._poll_once()
                if self._failing:
                    self._failing = False
                    failures = FAILURE_BACKOFF.execution()
            except asyncio.CancelledError:
                raise
            except Exception as error:
                self._failing = True
                delay = next(failures)
                log.error(
                    "listener %s: consumer failed, retrying in %.2gs: %s",
                    self._endpoint.listener_id,
                    delay,
                    translate(error, "fetching"),
                )
                await asyncio.sleep(delay)

    async def _poll_once(self) -> None:
        if self._joined and not self._in_group():
            # Hand nothing out and commit nothing while the group has lost this member; aiokafka
            # rejoins in the background and a rebalance (if any) revokes partitions meanwhile.
            if not self._out_of_group:
                self._out_of_group = True
                log.warning(
                    "listener %s: lost contact with the group coordinator; handing out nothing until "
                    "this member is back in group %s",
                    self._endpoint.listener_id,
                    self._endpoint.group_id,
                )
            await asyncio.sleep(self._config.poll_timeout)
            return
        if self._out_of_group:
            self._out_of_group = False
            log.info("listener %s: back in group %s", self._endpoint.listener_id, self._endpoint.group_id)
        if self._paused_until_due.until:
            self._paused_until_due.resume_due(self._assigned, self._paused_by_us)
        await self._hand_out()
        interval = self._config.poll_timeout
        limit = self._config.max_poll_records
        timeout = interval
        if self._backlog:
            room = await self._sink.wait_capacity(interval)
            if room:
                await self._hand_out()
                if self._backlog and time.monotonic() - self._last_poll < interval:
                    return  # handlers keep up: hand out more, poll when the interval is due
            if not room or self._backlog_size() >= limit:
                # No room for a whole poll, or a full poll waiting: pause rather than buffer more (and
                # rather than let the fetcher drop and re-fetch) and keep polling, so the group keeps
                # this member.
                self._pause()
            timeout = 0.0
        elif self._paused_by_us:
            self._resume()
        wanted = max(1, limit - self._backlog_size())
        batch = await self._consumer.getmany(timeout_ms=int(timeout * 1000), max_records=wanted)
        self._last_poll = time.monotonic()
        self._backlog.extend(_Run(tp, records) for tp, records in batch.items() if records)
        if self._at_most_once:
            await commit_fetched(self._consumer, batch)
        due = time.monotonic() - self._last_commit >= self._config.commit_interval
        if due or self._settler.finished_since_commit >= self._config.commit_count:
            await self._commit(list(self._held.values()), reason="interval")

    def _backlog_size(self) -> int:
        return sum(len(run.records) - run.next for run in self._backlog)

    def _drop_runs_of(self, partitions: Collection[TopicPartition]) -> deque[_Run]:
        """Forget the waiting records of ``partitions``: they are read again, or no longer ours."""
        self._backlog = deque(run for run in self._backlog if run.tp not in partitions)
        return self._backlog

    async def _hand_out(self) -> None:
        self._check_stall()
        if self._rejoining:
            return
        if self._batch:
            while self._backlog and self._sink.has_capacity():
                await self._hand_out_batch()
            return
        topics, settler, sink = self._topics, self._settler, self._sink
        backlog, message_of = self._backlog, topics.message
        while backlog:
            run = backlog[0]
            records = run.records
            state = self._hold(run.tp, records[run.next].offset)
            if state is None:  # revoked while waiting: dropped, uncommitted
                backlog.popleft()
                continue
            if topics.is_delayed(run.tp.topic):
                if not self._hand_out_delayed(run, state):
                    return
                backlog = self._backlog  # the partition may wait from a record on: its runs are gone
                continue
            room = sink.room()
            if room <= 0:
                return  # at the bound, or stopping: the rest waits, unstarted and uncommitted
            first = run.next
            end = min(len(records), first + room)
            # A whole run at once: offsets, capacity and the lane hand-off are counted once per run.
            deliveries = [RecordDelivery(record, message_of, settler, state) for record in records[first:end]]
            taken = sink.offer_run(deliveries)
            if taken:
                state.offsets.start_run([record.offset for record in records[first : first + taken]])
            run.next = first + taken
            if run.next < len(records):
                return
            backlog.popleft()

    def _hand_out_delayed(self, run: _Run, state: HeldPartition) -> bool:
        """Records of a retry or delay topic, one by one up to the first not yet due (its partition then
        waits, paused, and its runs leave the backlog); False when the listener has no room."""
        topics, wait_until_due = self._topics, self._paused_until_due.wait_until_due
        build = topics.delayed_message if run.tp.topic in topics.delay_sources else topics.message
        records = run.records
        for index in range(run.next, len(records)):
            record = records[index]
            message = build(record)
            if wait_until_due(run.tp, message):
                self._drop_runs_of((run.tp,))
                return True
            if not self._sink.offer_run((RecordDelivery(record, build, self._settler, state, message),)):
                run.next = index
                return False
            state.offsets.start(record.offset)
        self._backlog.popleft()
        return True

    async def _hand_out_batch(self) -> None:
        """A batch listener gets the waiting records of one partition from one poll as one delivery."""
        run = self._backlog.popleft()
        records = run.records[run.next :]
        state = self._hold(run.tp, records[0].offset)
        if state is None:
            return
        topics = self._topics
        build = topics.delayed_message if run.tp.topic in topics.delay_sources else topics.message
        messages = [build(record) for record in records]
        if topics.is_delayed(run.tp.topic):  # the batch ends before the first record not yet due
            for index, message in enumerate(messages):
                if self._paused_until_due.wait_until_due(run.tp, message):
                    self._drop_runs_of((run.tp,))
                    records, messages = records[:index], messages[:index]
                    break
            if not records:
                return
        for record in records:
            state.offsets.start(record.offset)
        message = batch_message(messages)
        await self._sink.submit(Delivery(message, self._settler, state))

    def _hold(self, tp: TopicPartition, offset: int) -> HeldPartition | None:
        if tp not in self._assigned:
            return None  # revoked while waiting in the backlog
        state = self._held.get(tp)
        if state is None:
            state = self._held[tp] = HeldPartition(tp, PartitionOffsets(offset), committed=offset)
        return state

    def _pause(self) -> None:
        newly = self._assigned - self._paused_by_us
        if newly:
            self._consumer.pause(*newly)
            self._paused_by_us |= newly

    def _resume(self) -> None:
        if self._paused_by_us:
            still = (self._paused_by_us & self._assigned) - self._paused_until_due.until.keys()
            if still:
                self._consumer.resume(*still)
            self._paused_by_us.clear()

    async def _commit(self, partitions: Iterable[HeldPartition], *, reason: str) -> bool:
        self._last_commit = time.monotonic()
        self._settler.finished_since_commit = 0
        return await commit_finished(
            self._consumer, partitions, listener_id=self._endpoint.listener_id, reason=reason
        )

    # rebalance listener ---------------------------------------------------------------------------

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        self._joined = False  # rebalancing until the next assignment
        revoked = set(revoked)
        self._assigned -= revoked
        self._drop_runs_of(revoked)
        names = {(tp.topic, tp.partition) for tp in revoked}
        log.info(
            "listener %s: partitions %s revoked; finishing their in-flight records before handing them over",
            self._endpoint.listener_id,
            _names(revoked),
        )
        drained = await self._sink.drain(
            lambda message: (record_topic(message), message.partition) in names, self._config.revoke_timeout
        )
        if not drained:
            log.warning(
                "listener %s: in-flight records of revoked %s did not finish within %ss; they stay "
                "uncommitted and will be delivered again",
                self._endpoint.listener_id,
                sorted(names),
                self._config.revoke_timeout,
            )
        states = [self._held.pop(tp) for tp in revoked if tp in self._held]
        await self._commit(states, reason="revoke")
        for state in states:
            state.active = False
        self._paused_by_us -= revoked
        self._paused_until_due.forget(revoked)

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        self._assigned |= set(assigned)
        self._joined = True
        self._rejoining = False
        self._alive_at = time.monotonic()
        self._topics.learn_delay_topics(assigned)
        log.info("listener %s: partitions %s assigned", self._endpoint.listener_id, _names(assigned))
        if self._backlog:
            self._pause()

    def _read_again(self, state: HeldPartition) -> None:
        """A released record: re-read its partition from the first unfinished record, as the memory
        broker does; nothing is lost, records after it that are still in flight run again."""
        if not (
            state.active
            and self._fetching
            and state.tp in self._assigned
            and self._held.get(state.tp) is state
        ):
            # Stopping or revoked (the revoke still commits what finishes in its drain): leaving it
            # unfinished keeps it uncommitted.
            return
        state.active = False
        del self._held[state.tp]
        self._drop_runs_of((state.tp,))
        self._consumer.seek(state.tp, state.offsets.committable)


def _names(partitions: Iterable[TopicPartition]) -> str:
    return ",".join(f"{tp.topic}[{tp.partition}]" for tp in sorted(partitions)) or "(none)"
