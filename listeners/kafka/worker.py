"""One Kafka consumer of a listener: fetch loop, backpressure by pausing, commits, rebalances, settling.

The fetch loop never waits for a handler. Fetched records wait in a backlog bounded by one poll
(``max_poll_records``) and are handed to the listener container while it has room. When a whole
``poll_timeout`` passes without room (slow handlers), every assigned partition is paused and the
loop keeps polling, so heartbeats and ``max_poll_interval_ms`` stay satisfied even under long
handlers (aiokafka#848); it resumes once there is room. Offsets are committed explicitly as
``{tp: contiguous finished offset}``: every ``commit_interval`` or after ``commit_count`` finished
records, on revoke (after draining that partition's in-flight records within ``revoke_timeout``),
and before the consumer stops.

Non-blocking retries go through Spring Kafka's retry topics (``<topic>-retry-<delayMs>``), which a
non-blocking listener consumes besides its own topics. A retry-topic record runs no earlier than the
due time in its ``retry_topic-backoff-timestamp`` header: its partition is paused at that record
until then (other partitions keep flowing) and resumed by the fetch loop once it is due. Delay topics
(``<topic>-delay``, users' delayed sends, see :mod:`listeners.kafka.delay`) are consumed by every
listener the same way; their records are handed out as first deliveries of ``<topic>``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka import errors as kafka_errors
from aiokafka.structs import ConsumerRecord

from listeners.deadletter.envelopes import kafka_dead_letter, kafka_retry
from listeners.deadletter.naming import kafka_dead_letter_topic
from listeners.kafka.config import KafkaConfig
from listeners.kafka.delay import (
    delayed_due_ms,
    delayed_message,
    pattern_delay_source,
    record_topic,
    subscription_pattern,
)
from listeners.kafka.errors import translate
from listeners.message import EMPTY_HEADERS, Headers, Message, batch_message
from listeners.outcome import Retry
from listeners.retry.backoff import BackOffPolicy
from listeners.retry.destinations import (
    kafka_retry_tier,
    kafka_retry_topic,
    kafka_retry_topics,
    kafka_source_topic,
    retry_tiers,
)
from listeners.retry.kafka_wire import due_at_ms, retry_state
from listeners.runtime.offsets import PartitionOffsets
from listeners.transport.base import Delivery, DeliverySink, Endpoint

if TYPE_CHECKING:
    from listeners.kafka.transport import KafkaTransport

log = logging.getLogger("listeners.kafka")

FAILURE_BACKOFF = BackOffPolicy(initial=0.2, multiplier=2.0, maximum=5.0, jitter=0.1)
"""Back-off of the fetch loop while the broker fails: it retries, never spins, never gives up."""


@dataclass(eq=False, slots=True)
class _Partition:
    """Offsets handed out from one assigned partition; replaced when the partition is re-read."""

    tp: TopicPartition
    offsets: PartitionOffsets
    committed: int
    active: bool = True


@dataclass(eq=False, slots=True)
class _Run:
    """Records of one partition from one poll, waiting to be handed out from ``next`` on."""

    tp: TopicPartition
    records: list[ConsumerRecord[bytes, bytes]]
    next: int = 0


class ConsumerWorker(ConsumerRebalanceListener):  # type: ignore[misc]
    """One AIOKafkaConsumer in the listener's group, and the settler of the records it hands out."""

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
        self._held: dict[TopicPartition, _Partition] = {}
        self._assigned: set[TopicPartition] = set()
        self._backlog: deque[_Run] = deque()
        self._group_id = endpoint.group_id
        self._listener_id = endpoint.listener_id
        self._paused_by_us: set[TopicPartition] = set()
        self._tiers = retry_tiers(endpoint.options)
        self._retry_topics = frozenset(
            topic for source in endpoint.sources for topic in kafka_retry_topics(endpoint.options, source)
        )
        self._waiting_until: dict[TopicPartition, float] = {}  # retry partitions paused until due
        self._delay_sources: dict[str, str] = {}  # delay topic -> the topic its records are for
        self._last_commit = 0.0
        self._last_poll = 0.0
        self._finished_since_commit = 0
        self._fetching = False
        self._task: asyncio.Task[None] | None = None

    # lifecycle ------------------------------------------------------------------------------------

    async def start(self, delay_topics: Mapping[str, str] | None = None) -> None:
        """Join the group on the listener's topics, their retry topics and ``delay_topics``
        (``{delay topic: topic}``, those that exist); a pattern covers its delay topics itself."""
        self._delay_sources = dict(delay_topics or {})
        try:
            await self._consumer.start()
        except Exception as error:
            raise translate(error, f"starting a consumer of listener {self._endpoint.listener_id}") from error
        pattern = self._endpoint.options.topic_pattern
        if pattern:  # the delay topics (and retry topics) of every matching topic too
            self._consumer.subscribe(pattern=subscription_pattern(pattern, bool(self._tiers)), listener=self)
        else:
            topics = [*self._endpoint.sources, *sorted(self._retry_topics), *sorted(self._delay_sources)]
            self._consumer.subscribe(topics=topics, listener=self)
        self._fetching = True
        self._task = asyncio.ensure_future(self._fetch_loop())

    async def stop_fetching(self) -> None:
        """Stop polling; records not yet handed out are dropped (they are not committed)."""
        self._fetching = False
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
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
                failures = FAILURE_BACKOFF.execution()
            except asyncio.CancelledError:
                raise
            except Exception as error:
                delay = next(failures)
                log.error(
                    "listener %s: consumer failed, retrying in %.2gs: %s",
                    self._endpoint.listener_id,
                    delay,
                    translate(error, "fetching"),
                )
                await asyncio.sleep(delay)

    async def _poll_once(self) -> None:
        if self._waiting_until:
            self._resume_due()
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
            await self._commit_fetched(batch)
        due = time.monotonic() - self._last_commit >= self._config.commit_interval
        if due or self._finished_since_commit >= self._config.commit_count:
            await self._commit(list(self._held.values()), reason="interval")

    def _backlog_size(self) -> int:
        return sum(len(run.records) - run.next for run in self._backlog)

    async def _hand_out(self) -> None:
        if self._batch:
            while self._backlog and self._sink.has_capacity():
                await self._hand_out_batch()
            return
        backlog, offer, message_of = self._backlog, self._sink.offer, self._message
        while backlog:
            run = backlog[0]
            records = run.records
            state = self._hold(run.tp, records[run.next].offset)
            if state is not None:  # else revoked while waiting: dropped, uncommitted
                start = state.offsets.start
                delayed = self._is_delayed_topic(run.tp.topic)
                build = self._delayed_message if run.tp.topic in self._delay_sources else message_of
                for index in range(run.next, len(records)):
                    record = records[index]
                    offset = record.offset
                    message = build(record)
                    if delayed and self._wait_until_due(run.tp, message):
                        backlog = self._backlog  # the partition waits from this record on; its runs left
                        break
                    if not offer(Delivery(message, self, (state, offset))):
                        run.next = index
                        return  # at the bound, or stopping: the rest waits, unstarted and uncommitted
                    start(offset)
                else:
                    backlog.popleft()
                continue
            backlog.popleft()

    async def _hand_out_batch(self) -> None:
        """A batch listener gets the waiting records of one partition from one poll as one delivery."""
        run = self._backlog.popleft()
        records = run.records[run.next :]
        state = self._hold(run.tp, records[0].offset)
        if state is None:
            return
        build = self._delayed_message if run.tp.topic in self._delay_sources else self._message
        messages = [build(record) for record in records]
        if self._is_delayed_topic(run.tp.topic):  # the batch ends before the first record not yet due
            for index, message in enumerate(messages):
                if self._wait_until_due(run.tp, message):
                    records, messages = records[:index], messages[:index]
                    break
            if not records:
                return
        for record in records:
            state.offsets.start(record.offset)
        message = batch_message(messages)
        await self._sink.submit(Delivery(message, self, (state, tuple(r.offset for r in records))))

    def _hold(self, tp: TopicPartition, offset: int) -> _Partition | None:
        if tp not in self._assigned:
            return None  # revoked while waiting in the backlog
        state = self._held.get(tp)
        if state is None:
            state = self._held[tp] = _Partition(tp, PartitionOffsets(offset), committed=offset)
        return state

    def _pause(self) -> None:
        newly = self._assigned - self._paused_by_us
        if newly:
            self._consumer.pause(*newly)
            self._paused_by_us |= newly

    def _resume(self) -> None:
        if self._paused_by_us:
            still = (self._paused_by_us & self._assigned) - self._waiting_until.keys()
            if still:
                self._consumer.resume(*still)
            self._paused_by_us.clear()

    # retry topics ---------------------------------------------------------------------------------

    def _is_delayed_topic(self, topic: str) -> bool:
        """One of this listener's retry or delay topics: its records carry due times."""
        if topic in self._delay_sources:
            return True
        return bool(self._tiers) and (topic in self._retry_topics or _looks_like_retry_topic(topic))

    def _delayed_message(self, record: ConsumerRecord[bytes, bytes]) -> Message:
        return delayed_message(record, self._delay_sources[record.topic], self._listener_id, self._group_id)

    def _source_topic(self, message: Message) -> str:
        """The topic a record first came from, by name: never from its headers, since a listener of a
        dead-letter topic must not send its records back where their kafka_*original-topic points."""
        topic = message.destination
        return kafka_source_topic(topic) if self._is_delayed_topic(topic) else topic

    def _wait_until_due(self, tp: TopicPartition, message: Message) -> bool:
        """If ``message`` is not due yet: pause its partition at it until it is, and return True."""
        raw = message.raw
        if raw is not None and raw.topic in self._delay_sources:
            due_ms = delayed_due_ms(raw)
        else:
            due_ms = retry_state(message.headers).due_ms
        if due_ms is None or due_ms <= time.time() * 1000:
            return False
        self._waiting_until[tp] = due_ms / 1000
        self._consumer.pause(tp)
        self._consumer.seek(tp, message.offset)
        self._backlog = deque(run for run in self._backlog if run.tp != tp)
        return True

    def _resume_due(self) -> None:
        now = time.time()
        due = [tp for tp, until in self._waiting_until.items() if until <= now]
        for tp in due:
            del self._waiting_until[tp]
            if tp in self._assigned and tp not in self._paused_by_us:
                self._consumer.resume(tp)

    def _message(self, record: ConsumerRecord[bytes, bytes]) -> Message:
        headers = Headers(tuple(record.headers)) if record.headers else EMPTY_HEADERS
        timestamp = record.timestamp
        # Positional: keyword arguments cost a measurable share of the per-record budget here.
        return Message(
            record.value or b"",
            headers,
            record.topic,
            self._listener_id,
            "kafka",
            record.key,
            record.partition,
            record.offset,
            timestamp / 1000 if timestamp is not None else None,
            retry_state(headers).attempt if headers.pairs and self._is_delayed_topic(record.topic) else 1,
            None,  # exchange
            None,  # routing_key
            False,  # redelivered
            self._group_id,
            (),  # batch
            record,
        )

    # commits --------------------------------------------------------------------------------------

    async def _commit(self, states: Iterable[_Partition], *, reason: str) -> bool:
        self._last_commit = time.monotonic()
        self._finished_since_commit = 0
        due = [state for state in states if state.active and state.offsets.committable > state.committed]
        if not due:
            return True
        offsets = {state.tp: state.offsets.committable for state in due}
        try:
            await self._consumer.commit(offsets)
        except (kafka_errors.CommitFailedError, kafka_errors.IllegalStateError) as error:
            # The group moved on (rebalance or lost membership): these partitions' records will be
            # delivered again from the last commit; the revoke path commits whatever it can first.
            log.warning(
                "listener %s: commit on %s not accepted: %s", self._endpoint.listener_id, reason, error
            )
            return False
        except kafka_errors.KafkaError as error:
            log.warning(
                "listener %s: commit on %s failed, will retry: %s",
                self._endpoint.listener_id,
                reason,
                translate(error, "committing"),
            )
            return False
        for state in due:
            state.committed = offsets[state.tp]
        return True

    async def _commit_fetched(self, batch: dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]]) -> None:
        """At-most-once: the fetched positions are committed before any of these records is handled."""
        offsets = {tp: records[-1].offset + 1 for tp, records in batch.items() if records}
        if offsets:
            await self._consumer.commit(offsets)

    # rebalance listener ---------------------------------------------------------------------------

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        revoked = set(revoked)
        self._assigned -= revoked
        self._backlog = deque(run for run in self._backlog if run.tp not in revoked)
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
        for tp in revoked:
            self._waiting_until.pop(tp, None)

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        self._assigned |= set(assigned)
        pattern = self._endpoint.options.topic_pattern
        if pattern:  # the delay topics among the matching topics
            for tp in assigned:
                source = pattern_delay_source(tp.topic, pattern)
                if source is not None:
                    self._delay_sources[tp.topic] = source
        log.info("listener %s: partitions %s assigned", self._endpoint.listener_id, _names(assigned))
        if self._backlog:
            self._pause()

    # Settler --------------------------------------------------------------------------------------

    def ack_now(self, delivery: Delivery) -> bool:
        state: _Partition
        state, offsets = delivery.handle
        if state.active:
            if self._batch:
                for offset in offsets:
                    state.offsets.finish(offset)
                self._finished_since_commit += len(offsets)
            else:
                state.offsets.finish(offsets)
                self._finished_since_commit += 1
        return True

    async def ack(self, delivery: Delivery) -> None:
        self.ack_now(delivery)

    async def release(self, delivery: Delivery) -> None:
        state: _Partition = delivery.handle[0]
        if not (state.active and self._fetching and self._held.get(state.tp) is state):
            return  # stopping or revoked: leaving it unfinished keeps it uncommitted
        # Re-read from the first unfinished record, as the memory broker does: nothing is lost,
        # records after it that are still in flight run again.
        state.active = False
        del self._held[state.tp]
        self._backlog = deque(run for run in self._backlog if run.tp != state.tp)
        self._consumer.seek(state.tp, state.offsets.committable)

    async def dead_letter(self, delivery: Delivery, error: BaseException) -> None:
        envelopes = []
        for message in delivery.message.records:
            source = self._source_topic(message)
            partitions = await self._transport.partitions_for(kafka_dead_letter_topic(self._endpoint, source))
            envelopes.append(kafka_dead_letter(self._endpoint, message, error, partitions, source=source))
        await self._transport.publish_many(envelopes)
        await self.ack(delivery)

    async def retry_later(self, delivery: Delivery, retry: Retry) -> None:
        """Republish to the retry topic of the record's source topic (confirmed), then mark it finished."""
        tier = kafka_retry_tier(self._tiers, retry)
        due_ms = due_at_ms(time.time(), retry.delay)
        envelopes = []
        for message in delivery.message.records:
            topic = kafka_retry_topic(self._source_topic(message), tier)
            partitions = await self._transport.partitions_for(topic)
            envelopes.append(kafka_retry(message, retry, topic=topic, due_ms=due_ms, partitions=partitions))
        await self._transport.publish_many(envelopes)
        await self.ack(delivery)


def _looks_like_retry_topic(topic: str) -> bool:
    """A pattern subscription's retry topics are not known in advance."""
    return kafka_source_topic(topic) != topic


def _names(partitions: Iterable[TopicPartition]) -> str:
    return ",".join(f"{tp.topic}[{tp.partition}]" for tp in sorted(partitions)) or "(none)"
