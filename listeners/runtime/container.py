"""ListenerContainer: runs one listener between its subscription and its pipeline.

It bounds in-flight work (``max_in_flight``; a subscription's ``submit`` waits at the bound), keeps
order within ordering lanes (``partition``: one lane per partition, ``key``: one per key within a
partition, ``none``: every message on its own), retries in place (blocking retries and deferrals wait on
the clock, never inside a handler), settles every outcome through the delivery's transport, and
stops gracefully: stop fetching, release what has not started, finish what has within the timeout,
release the rest uncommitted, then let the subscription make its final commit.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Hashable, Iterable, Sequence
from typing import Literal, Protocol

from listeners.clock import Clock
from listeners.logs.context import message_fields
from listeners.message import Message
from listeners.outcome import ACK, Ack, DeadLetter, Defer, Outcome, Release, Retry
from listeners.retry.backoff import BackOffPolicy
from listeners.runtime.pipeline import DirectCall, Handler
from listeners.runtime.stats import ListenerStats
from listeners.spec import Ordering
from listeners.transport.base import Delivery, Endpoint, Subscription, Transport

log = logging.getLogger("listeners.container")

State = Literal["created", "running", "stopping", "stopped"]

ErrorPolicy = Callable[[Message, Exception], Outcome]
"""What an exception from the pipeline means (retry, dead letter, ...): the error handler's ``decide``."""


class Lookahead(Protocol):
    """Told of each message as it is accepted and of each released before its turn (the idempotency
    guard claims keys ahead through it)."""

    def expect(self, message: Message) -> None: ...

    def forget(self, message: Message) -> None: ...


RUNNERS_AT_ONCE = 16
"""Lane runners a listener has on their way at most (tasks made, not yet running); see
``ListenerContainer._run_lanes``."""

SETTLE_BACKOFF = BackOffPolicy(initial=0.5, multiplier=2.0, maximum=30.0, jitter=0.1)
"""Back-off while a settle (ack, dead-letter or retry publish) keeps failing: no loss, no spin."""


class ListenerContainer:
    """One listener's runtime; the :class:`~listeners.transport.base.DeliverySink` of its subscription.

    ``on_error`` turns an exception from the pipeline into an outcome; without one, such a message is
    dead-lettered. The starter passes the listener's :class:`~listeners.retry.interceptor.ErrorHandler`
    here rather than as the outermost interceptor: same behaviour, one coroutine less per message.
    ``lookahead`` is told of every accepted message and of every one released before its turn.
    ``stats``: the listener's counters, when others (the idempotency guard) count into them too.
    ``direct``: the pipeline's two parts when it only awaits the handler with the payload (see
    :data:`~listeners.runtime.pipeline.DirectCall`); the container then calls them itself.
    """

    def __init__(
        self,
        endpoint: Endpoint,
        pipeline: Handler,
        transport: Transport,
        clock: Clock,
        *,
        on_error: ErrorPolicy | None = None,
        settle_backoff: BackOffPolicy = SETTLE_BACKOFF,
        lookahead: Lookahead | None = None,
        stats: ListenerStats | None = None,
        direct: DirectCall | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.stats = stats or ListenerStats()
        self.state: State = "created"
        self._pipeline = pipeline
        self._direct = direct
        self._on_error = on_error or self._dead_letter_unexpected
        self._transport = transport
        self._clock = clock
        self._settle_backoff = settle_backoff
        self._ordering: Ordering = endpoint.options.ordering or "partition"
        self._at_most_once = endpoint.options.ack_mode == "at_most_once"
        self._capacity = endpoint.options.max_in_flight
        self._subscription: Subscription | None = None
        self._lookahead = lookahead
        self._pending: dict[Delivery, None] = {}  # insertion-ordered: releases go in arrival order
        # Handled deliveries to acknowledge once their Ack.after is done, by that future (one for the
        # deliveries whose idempotency keys are marked done together: one callback for all of them).
        self._acking: dict[asyncio.Future[None], list[Delivery]] = {}
        self._lanes: dict[Hashable, _Lane] = {}  # ordered lanes with deliveries waiting, by lane key
        self._running: set[_Lane] = set()  # every lane with a runner or waiting for one, ordered or not
        self._unstarted: deque[tuple[Hashable | None, _Lane]] = deque()  # lanes waiting for a runner
        self._runners_starting = 0  # runner tasks made and not yet running: they take what waits
        self._tasks: set[asyncio.Task[None]] = set()
        self._space = asyncio.Event()
        self._space.set()
        self._space_awaited = False  # _space is clear and someone waits on it
        # Waiters at the bound wake once a quarter of it is free, not at every finished message: the
        # fetch loop then hands out in bursts instead of switching tasks once per message.
        self._resume_at = self._capacity - max(1, self._capacity // 4)
        self._changed = asyncio.Event()  # set by a finish while someone drains
        self._draining = 0
        self._stopping = asyncio.Event()
        self._stop_requested = False  # mirrors _stopping for the per-poll check in room()

    @property
    def listener_id(self) -> str:
        return self.endpoint.listener_id

    @property
    def in_flight(self) -> int:
        """Deliveries accepted and not yet settled."""
        return len(self._pending)

    @property
    def subscription(self) -> Subscription | None:
        """The transport's consumers of this listener, once started (health checks read them)."""
        return self._subscription

    def oldest_pending(self) -> Message | None:
        """The earliest accepted delivery's message not yet settled (time-lag metrics read its
        timestamp); None when nothing is in flight."""
        for delivery in self._pending:
            return delivery.message
        return None

    def describe(self) -> str:
        """Sources as the subscription describes them, for log lines."""
        return self._subscription.describe() if self._subscription else ",".join(self.endpoint.sources)

    # lifecycle ------------------------------------------------------------------------------------

    async def start(self) -> None:
        """Subscribe and start consuming."""
        if self.state != "created":
            raise RuntimeError(f"listener {self.listener_id} is {self.state}; a container starts once")
        self._subscription = self._transport.subscribe(self.endpoint, self)
        await self._subscription.start()
        self.state = "running"

    async def stop(self, timeout: float) -> bool:
        """Stop gracefully within ``timeout`` seconds; False if in-flight work had to be abandoned."""
        if self.state in ("stopping", "stopped"):
            return True
        was_running = self.state == "running"
        self.state = "stopping"
        self._stop_requested = True
        self._stopping.set()
        self._space.set()
        detached = self._detach_releasable(_everything)  # at once: lanes go on only with what must run
        finished = True
        if self._subscription is not None and was_running:
            await self._subscription.stop()
            await self._release_all(detached, "released before it started")
            finished = await self.drain(_everything, timeout)
            if not finished:
                await self._abandon()
            await self._subscription.close()
        self.state = "stopped"
        return finished

    # DeliverySink ---------------------------------------------------------------------------------

    def has_capacity(self) -> bool:
        return len(self._pending) < self._capacity

    async def wait_capacity(self, timeout: float) -> bool:
        if self.has_capacity() or self._stopping.is_set():
            return self.has_capacity()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._await_space(), timeout)
        return self.has_capacity()

    async def submit(self, delivery: Delivery) -> None:
        while len(self._pending) >= self._capacity and not self._stopping.is_set():
            await self._await_space()
        if self._stopping.is_set():
            await self._release(delivery, "listener stopping")
            return
        self._accept(delivery)

    def offer(self, delivery: Delivery) -> bool:
        return self.offer_run((delivery,)) == 1

    def room(self) -> int:
        if self._stop_requested:
            return 0
        return max(0, self._capacity - len(self._pending))

    def offer_run(self, deliveries: Sequence[Delivery]) -> int:
        """Accept the first ``room()`` of ``deliveries`` (one partition's, in order) in one go: under
        ``ordering: partition`` they join their lane together, so the bookkeeping is paid once per run."""
        room = self.room()
        if room < len(deliveries):
            deliveries = deliveries[:room]
        if not deliveries:
            return 0
        if self._ordering != "partition":
            for delivery in deliveries:
                self._accept(delivery)
            return len(deliveries)
        self._pending.update(dict.fromkeys(deliveries))
        lookahead = self._lookahead
        if lookahead is not None:
            for delivery in deliveries:
                lookahead.expect(delivery.message)
        first = deliveries[0].message
        key = (first.destination, first.partition)
        lane = self._lanes.get(key)
        if lane is not None:
            lane.waiting.extend(deliveries)
        else:
            lane = self._lanes[key] = _Lane(deliveries)
            self._spawn_lane(key, lane)
        return len(deliveries)

    def _accept(self, delivery: Delivery) -> None:
        self._pending[delivery] = None
        if self._lookahead is not None:
            self._lookahead.expect(delivery.message)
        ordering = self._ordering
        if ordering == "none":
            self._spawn_lane(None, _Lane((delivery,)))
            return
        message = delivery.message
        if ordering == "partition":
            key: Hashable = (message.destination, message.partition)
        else:
            key = (message.destination, message.partition, message.key)
        lane = self._lanes.get(key)
        if lane is not None:
            lane.waiting.append(delivery)
            return
        lane = self._lanes[key] = _Lane((delivery,))
        self._spawn_lane(key, lane)

    async def drain(self, matches: Callable[[Message], bool], timeout: float) -> bool:
        """Release the matching deliveries that have not started (except those that must run, see
        :meth:`_detach_releasable`) and wait until no matching delivery is in flight."""
        await self._release_all(self._detach_releasable(matches), "released before it started")

        def settled() -> bool:
            return not any(matches(delivery.message) for delivery in self._pending)

        deadline = asyncio.get_running_loop().time() + timeout
        self._draining += 1
        try:
            while not settled():
                remaining = deadline - asyncio.get_running_loop().time()
                if remaining <= 0:
                    return False
                self._changed.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._changed.wait(), remaining)
        finally:
            self._draining -= 1
        return True

    def _detach_releasable(self, matches: Callable[[Message], bool]) -> list[Delivery]:
        """Take the matching deliveries that have not started out of their lanes, in arrival order.

        A record of a log partition stays (and runs) when a later record of its partition has started
        or finished: offsets are committed only up to the first unfinished one, so releasing it would
        have that later record, already handled, delivered again (``ordering: key`` or ``none``).
        """
        ceilings: dict[tuple[str, int | None], int] = {}  # highest started offset per partition
        for delivery in self._started():
            message = delivery.message
            if message.offset is not None:
                where = (message.destination, message.partition)
                ceilings[where] = max(ceilings.get(where, message.offset), message.offset)
        detached: set[Delivery] = set()
        for lane in self._running:
            leaving = [
                delivery
                for delivery in lane.waiting
                if matches(delivery.message) and not _must_run(delivery, ceilings)
            ]
            for delivery in leaving:
                lane.waiting.remove(delivery)
            detached.update(leaving)
        return [delivery for delivery in self._pending if delivery in detached]

    async def _release_all(self, deliveries: list[Delivery], reason: str) -> None:
        for delivery in deliveries:
            await self._release(delivery, reason)

    # processing -----------------------------------------------------------------------------------

    def _started(self) -> set[Delivery]:
        started = {lane.current for lane in self._running if lane.current is not None}
        for deliveries in self._acking.values():
            started.update(deliveries)
        return started

    def _spawn_lane(self, key: Hashable | None, lane: _Lane) -> None:
        """Give ``lane`` a runner: the next free one, or a new one (see :meth:`_run_lanes`)."""
        self._running.add(lane)
        self._unstarted.append((key, lane))
        self._top_up_runners()

    def _top_up_runners(self) -> None:
        """Have as many runners on their way as lanes wait for one, up to ``RUNNERS_AT_ONCE``."""
        wanted = min(len(self._unstarted), RUNNERS_AT_ONCE)
        while self._runners_starting < wanted:
            self._spawn_runner()

    def _spawn_runner(self) -> None:
        self._runners_starting += 1
        task = asyncio.ensure_future(self._run_lanes())
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("listener %s: internal error", self.listener_id, exc_info=task.exception())

    async def _run_lanes(self) -> None:
        """A runner: take lanes that wait for one, each until none of its deliveries waits.

        A task per lane would cost more than handling a fast message (under ``ordering: key`` or
        ``none`` most lanes hold one), so runners are shared. Each lane that starts while others wait
        tops up the runners on their way (up to ``RUNNERS_AT_ONCE``), which take the next lanes should
        this one's handler wait: lanes whose handlers wait all start within a few event-loop turns;
        when handlers do not wait, a few runners go through them all.
        """
        self._runners_starting -= 1
        unstarted = self._unstarted
        while unstarted:
            key, lane = unstarted.popleft()
            self._top_up_runners()
            await self._run_lane(key, lane)

    async def _run_lane(self, key: Hashable | None, lane: _Lane) -> None:
        """Handle the lane's deliveries one after another until none waits (or the listener stops).

        The common outcome (handled, acknowledged without a broker round trip) is settled inline:
        this loop is every message's path, so it costs no coroutine of its own.
        """
        waiting, pipeline, stats, at_most_once = lane.waiting, self._pipeline, self.stats, self._at_most_once
        direct = self._direct
        try:
            while waiting:  # on stop, what may be released has left ``waiting`` already
                delivery = lane.current = waiting.popleft()
                if at_most_once:
                    await self._handle_at_most_once(delivery)
                    continue
                try:
                    if direct is None:
                        outcome = await pipeline(delivery.message)
                    else:  # the pipeline in parts: no coroutine of its own, no Message unless it fails
                        try:
                            payload = direct.decode(delivery.body)
                        except Exception as error:
                            raise direct.decode_failed(delivery.message, error) from error
                        await direct.handler(payload)
                        outcome = ACK
                except asyncio.CancelledError:
                    raise
                except Exception as error:
                    outcome = self._on_error(delivery.message, error)
                if outcome is ACK and delivery.settler.ack_now(delivery):
                    stats.processed += 1
                    self._finish(delivery)
                elif isinstance(outcome, Ack) and outcome.after is not None:
                    self._ack_after(delivery, outcome.after)  # the lane goes on
                else:
                    await self._conclude(delivery, outcome)
        finally:
            lane.current = None
            self._running.discard(lane)
            if key is not None and self._lanes.get(key) is lane:
                del self._lanes[key]

    async def _conclude(self, delivery: Delivery, outcome: Outcome) -> None:
        """Settle ``outcome`` (after any blocking retries it asks for); release if the listener stops."""
        if outcome is ACK:
            # Acknowledging needs the broker: one attempt here, the general path below retries it.
            try:
                await delivery.settler.ack(delivery)
            except asyncio.CancelledError:
                raise
            except Exception:
                pass
            else:
                self.stats.processed += 1
                self._finish(delivery)
                return
        if await self._settle(delivery, await self._run(delivery, outcome)):
            self._finish(delivery)
            return
        await self._release(delivery, "listener stopping before the broker confirmed the settle")

    def _ack_after(self, delivery: Delivery, after: asyncio.Future[None]) -> None:
        """Acknowledge ``delivery`` once ``after`` is done."""
        waiting = self._acking.get(after)
        if waiting is None:
            self._acking[after] = [delivery]
            after.add_done_callback(self._acks_due)
        else:
            waiting.append(delivery)

    def _acks_due(self, after: asyncio.Future[None]) -> None:
        pending, stats = self._pending, self.stats
        for delivery in self._acking.pop(after, ()):
            if delivery not in pending:
                continue  # released meanwhile (shutdown timeout)
            if delivery.settler.ack_now(delivery):
                stats.processed += 1
                self._finish(delivery)
                continue
            task = asyncio.ensure_future(self._conclude(delivery, ACK))
            self._tasks.add(task)
            task.add_done_callback(self._task_done)

    async def _handle_at_most_once(self, delivery: Delivery) -> None:
        if await self._settle(delivery, Ack(), record=False):
            self.stats.record(await self._attempt(delivery.message))
            self._finish(delivery)
            return
        await self._release(delivery, "listener stopping before the broker confirmed the settle")

    async def _run(self, delivery: Delivery, outcome: Outcome) -> Outcome:
        """Follow blocking retries and deferrals from ``outcome`` to the outcome to settle."""
        while True:
            if isinstance(outcome, Retry) and outcome.blocking:
                self.stats.record(outcome)
                if not await self._wait(outcome.delay):
                    return Release("listener stopping during a retry back-off")
                delivery.message = delivery.message.next_attempt()
            elif isinstance(outcome, Defer):
                if not await self._wait(outcome.delay):
                    return Release(f"listener stopping while deferred: {outcome.reason}")
            else:
                return outcome
            outcome = await self._attempt(delivery.message)

    async def _attempt(self, message: Message) -> Outcome:
        try:
            return await self._pipeline(message)
        except asyncio.CancelledError:
            raise
        except Exception as error:
            return self._on_error(message, error)

    def _dead_letter_unexpected(self, message: Message, error: Exception) -> Outcome:
        log.error(
            "listener %s: pipeline error for %s",
            self.listener_id,
            message.describe(),
            exc_info=error,
            extra=message_fields(message),
        )
        return DeadLetter(error)

    async def _settle(self, delivery: Delivery, outcome: Outcome, *, record: bool = True) -> bool:
        """Settle until the broker confirms; False if the listener stopped first (delivery stays pending)."""
        delays = None  # made on the first failure only: settling is on every message's path
        while True:
            try:
                await self._settlement(delivery, outcome)
            except asyncio.CancelledError:
                raise
            except Exception as error:
                delays = delays or self._settle_backoff.execution()
                delay = next(delays)
                log.error(
                    "listener %s: could not settle %s (%s), trying again in %.3gs: %s: %s",
                    self.listener_id,
                    delivery.message.describe(),
                    type(outcome).__name__,
                    delay,
                    type(error).__name__,
                    error,
                    extra=message_fields(delivery.message),
                )
                if not await self._wait(delay):
                    return False
                continue
            if record:
                self.stats.record(outcome)
            return True

    def _settlement(self, delivery: Delivery, outcome: Outcome) -> Awaitable[None]:
        """The settler call for ``outcome`` (returned, not awaited here: one frame less per message)."""
        settler = delivery.settler
        if isinstance(outcome, Ack):
            return settler.ack(delivery) if outcome.after is None else self._ack_once_done(delivery, outcome)
        if isinstance(outcome, DeadLetter):
            return settler.dead_letter(delivery, outcome.error)
        if isinstance(outcome, Retry):
            return settler.retry_later(delivery, outcome)
        if isinstance(outcome, Release):
            return settler.release(delivery)
        raise TypeError(f"outcome {outcome!r} cannot be settled by a transport")

    async def _ack_once_done(self, delivery: Delivery, outcome: Ack) -> None:
        if outcome.after is not None:
            await asyncio.shield(outcome.after)
        await delivery.settler.ack(delivery)

    async def _wait(self, delay: float) -> bool:
        """Wait ``delay`` on the clock; False (at once) if the listener starts stopping."""
        if self._stopping.is_set():
            return False
        sleeper = asyncio.ensure_future(self._clock.sleep(delay))
        stopper = asyncio.ensure_future(self._stopping.wait())
        try:
            await asyncio.wait((sleeper, stopper), return_when=asyncio.FIRST_COMPLETED)
        finally:
            sleeper.cancel()
            stopper.cancel()
        return not self._stopping.is_set()

    def _finish(self, delivery: Delivery) -> None:
        pending = self._pending
        pending.pop(delivery, None)
        if self._space_awaited and len(pending) <= self._resume_at:
            self._space_awaited = False
            self._space.set()
        if self._draining:
            self._changed.set()

    def _await_space(self) -> Awaitable[bool]:
        """Wait until a quarter of the bound is free (cleared now, before the caller yields)."""
        self._space.clear()
        self._space_awaited = True
        return self._space.wait()

    async def _release(self, delivery: Delivery, reason: str) -> None:
        if self._lookahead is not None:
            self._lookahead.forget(delivery.message)
        try:
            await delivery.settler.release(delivery)
        except Exception as error:  # the broker redelivers unsettled messages anyway
            log.warning(
                "listener %s: release of %s failed: %s",
                self.listener_id,
                delivery.message.describe(),
                error,
                extra=message_fields(delivery.message),
            )
        self.stats.record(Release(reason))
        self._finish(delivery)

    async def _abandon(self) -> None:
        """After the stop timeout: cancel handlers still running and release everything unsettled."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        abandoned = list(self._pending)
        if abandoned:
            log.warning(
                "listener %s: %d message(s) did not finish within the shutdown timeout; released uncommitted",
                self.listener_id,
                len(abandoned),
            )
        for delivery in abandoned:
            await self._release(delivery, "shutdown timeout")


class _Lane:
    """Deliveries that must run one after another (one partition, or one key), and the one running."""

    __slots__ = ("current", "waiting")

    def __init__(self, deliveries: Iterable[Delivery]) -> None:
        self.waiting = deque(deliveries)
        self.current: Delivery | None = None


def _everything(message: Message) -> bool:
    return True


def _must_run(delivery: Delivery, ceilings: dict[tuple[str, int | None], int]) -> bool:
    """Whether ``delivery`` (not started) must run before its partition can be committed past later
    records that started (``ceilings``) or finished (its settler knows)."""
    message = delivery.message
    if message.offset is None:
        return False
    ceiling = ceilings.get((message.destination, message.partition))
    if ceiling is not None and ceiling > message.offset:
        return True
    return delivery.settler.holds_back_finished(delivery)
