"""Listener-level metrics read at collection time: counters, in-flight work, consumer lag, time lag.

Observable instruments whose callbacks read what the listener containers keep anyway
(:class:`~listeners.runtime.stats.ListenerStats`, ``in_flight``, the oldest unfinished message) and
what the subscriptions report (:mod:`listeners.metrics.lag`): the message path pays nothing for them.
Callbacks run wherever the reader collects; one that finds a listener changing under it (a reader on
another thread) skips that listener for the round rather than fail the collection.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from opentelemetry.metrics import CallbackOptions, Meter, Observation

from listeners.clock import Clock
from listeners.metrics import names
from listeners.metrics.lag import ReportsLag
from listeners.runtime.container import ListenerContainer

log = logging.getLogger("listeners.metrics")

Listeners = Callable[[], Iterable[ListenerContainer]]

COUNTERS: tuple[tuple[str, str, str], ...] = (
    (names.PROCESSED, "processed", "Messages handled successfully."),
    (names.FAILED, "failed", "Failed handling attempts (each retry and dead letter follows one)."),
    (names.RETRIES, "retried", "Retries scheduled (blocking and non-blocking)."),
    (names.DEAD_LETTERS, "dead_lettered", "Messages sent to the dead-letter destination."),
    (names.DUPLICATES_SKIPPED, "duplicates_skipped", "Duplicates acknowledged without handling them."),
    (names.DISCARDED, "discarded", "Failed messages acknowledged without a dead letter."),
    (names.STORE_ERRORS, "store_errors", "Idempotency store calls that failed (deferred or handled open)."),
    (names.RELEASED, "released", "Messages given back to the broker unsettled (e.g. on stop)."),
)
"""``(instrument, ListenerStats field, description)`` of the observable counters."""


class ListenerObserver:
    """Registers the observable instruments of the application's listeners on ``meter``."""

    def __init__(self, meter: Meter, listeners: Listeners, clock: Clock) -> None:
        self._listeners = listeners
        self._clock = clock
        self._attributes: dict[str, dict[str, Any]] = {}
        for name, field, description in COUNTERS:
            meter.create_observable_counter(
                name, [self._counter(field)], unit="{message}", description=description
            )
        meter.create_observable_gauge(
            names.IN_FLIGHT, [self._in_flight], unit="{message}",
            description="Messages accepted by the listener and not yet settled.",
        )  # fmt: skip
        meter.create_observable_gauge(
            names.CONSUMER_LAG, [self._lag], unit="{message}",
            description="Messages not yet consumed: high watermark minus committed offset per Kafka "
            "partition, messages ready in the RabbitMQ queue.",
        )  # fmt: skip
        meter.create_observable_gauge(
            names.TIME_LAG, [self._time_lag], unit="s",
            description="Age of the oldest message the listener accepted and has not finished.",
        )  # fmt: skip

    def _counter(self, field: str) -> Callable[[CallbackOptions], Iterator[Observation]]:
        def observe(_options: CallbackOptions) -> Iterator[Observation]:
            for listener in self._each(running=False):
                yield Observation(getattr(listener.stats, field), self._of(listener))

        return observe

    def _in_flight(self, _options: CallbackOptions) -> Iterator[Observation]:
        for listener in self._each():
            yield Observation(listener.in_flight, self._of(listener))

    def _lag(self, _options: CallbackOptions) -> Iterator[Observation]:
        for listener in self._each():
            subscription = listener.subscription
            if not isinstance(subscription, ReportsLag):
                continue
            try:
                entries = list(subscription.consumer_lag())
            except RuntimeError as error:  # changed while read from another thread
                log.debug("listener %s: lag not read this round: %s", listener.listener_id, error)
                continue
            base = self._of(listener)
            for destination, partition, messages in entries:
                attributes = {**base, names.DESTINATION: destination}
                if partition is not None:
                    attributes[names.PARTITION] = str(partition)
                yield Observation(messages, attributes)

    def _time_lag(self, _options: CallbackOptions) -> Iterator[Observation]:
        now = self._clock.time()
        for listener in self._each():
            try:
                oldest = listener.oldest_pending()
            except RuntimeError:  # changed while read from another thread
                continue
            age = 0.0
            if oldest is not None and oldest.timestamp is not None:
                age = max(0.0, now - oldest.timestamp)
            yield Observation(age, self._of(listener))

    def _each(self, *, running: bool = True) -> list[ListenerContainer]:
        """The running listeners; with ``running=False`` every one that started (counters stay)."""
        if running:
            return [listener for listener in list(self._listeners()) if listener.state == "running"]
        return [listener for listener in list(self._listeners()) if listener.state != "created"]

    def _of(self, listener: ListenerContainer) -> dict[str, Any]:
        attributes = self._attributes.get(listener.listener_id)
        if attributes is None:
            endpoint = listener.endpoint
            attributes = {names.SYSTEM: names.SYSTEMS[endpoint.kind], names.LISTENER_ID: endpoint.listener_id}
            if endpoint.kind == "kafka":
                attributes[names.CONSUMER_GROUP] = endpoint.group_id
            self._attributes[listener.listener_id] = attributes
        return attributes
