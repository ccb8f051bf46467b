"""Per-message instruments: process duration and consumed messages (a pipeline step), sent messages.

These are the only instruments on the message path; everything else is observed at collection time
(:mod:`listeners.metrics.observed`). Attribute sets are built once per destination and outcome and
reused, so a handled message costs one clock read, one histogram record and one counter add.
"""

from __future__ import annotations

import time
from typing import Any

from opentelemetry.metrics import Meter

from listeners.message import Message
from listeners.metrics import names
from listeners.outcome import Ack, Outcome
from listeners.runtime.pipeline import Handler
from listeners.spec import TransportKind
from listeners.transport.base import Endpoint

Attributes = dict[str, Any]


class MessageMetrics:
    """The message instruments of one application, from its meter."""

    def __init__(self, meter: Meter) -> None:
        self.duration = meter.create_histogram(
            names.PROCESS_DURATION,
            unit="s",
            description="Duration of processing operations (one per handling attempt).",
            explicit_bucket_boundaries_advisory=list(names.DURATION_BUCKETS),
        )
        self.consumed = meter.create_counter(
            names.CONSUMED_MESSAGES,
            unit="{message}",
            description="Messages delivered to the application by the broker.",
        )
        self.sent = meter.create_counter(
            names.SENT_MESSAGES,
            unit="{message}",
            description="Messages the application's publishers sent (confirmed or failed).",
        )
        self._sent_attributes: dict[tuple[TransportKind, str, str | None], Attributes] = {}

    def process_step(self, endpoint: Endpoint) -> ProcessMetrics:
        """The pipeline step that measures the handling of ``endpoint``'s messages."""
        return ProcessMetrics(self, endpoint)

    def count_sent(
        self, kind: TransportKind, destination: str, count: int = 1, error: BaseException | None = None
    ) -> None:
        """Count ``count`` messages sent to ``destination``; ``error`` if the publish failed."""
        failure = names.error_type(error) if error is not None else None
        key = (kind, destination, failure)
        attributes = self._sent_attributes.get(key)
        if attributes is None:
            attributes = {
                names.SYSTEM: names.SYSTEMS[kind],
                names.DESTINATION: destination or "(default exchange)",
                names.OPERATION_NAME: "send",
                names.OPERATION_TYPE: "send",
            }
            if failure is not None:
                attributes[names.ERROR_TYPE] = failure
            self._sent_attributes[key] = attributes
        self.sent.add(count, attributes)


class ProcessMetrics:
    """A listener's pipeline step: records ``messaging.process.duration`` for every handling attempt
    (with ``error.type`` when it failed) and counts ``messaging.client.consumed.messages`` once per
    delivery from the broker (a blocking retry runs the same delivery again: it is not counted again)."""

    def __init__(self, metrics: MessageMetrics, endpoint: Endpoint) -> None:
        self._duration = metrics.duration
        self._consumed = metrics.consumed
        self._base: Attributes = {
            names.SYSTEM: names.SYSTEMS[endpoint.kind],
            names.OPERATION_NAME: "process",
            names.OPERATION_TYPE: "process",
            names.LISTENER_ID: endpoint.listener_id,
        }
        if endpoint.kind == "kafka":
            self._base[names.CONSUMER_GROUP] = endpoint.group_id
        self._retries_redelivered = endpoint.options.retry.mode != "blocking"
        self._attributes: dict[tuple[str, str | None], Attributes] = {}

    async def __call__(self, message: Message, call_next: Handler) -> Outcome:
        start = time.perf_counter()
        if message.attempt == 1 or self._retries_redelivered:
            self._consumed.add(len(message.batch) or 1, self._attributes_of(message.destination, None))
        try:
            outcome = await call_next(message)
        except Exception as error:
            elapsed = time.perf_counter() - start
            self._duration.record(elapsed, self._attributes_of(message.destination, names.error_type(error)))
            raise
        elapsed = time.perf_counter() - start
        failure = outcome.error if isinstance(outcome, Ack) else None
        failed = names.error_type(failure) if failure is not None else None
        self._duration.record(elapsed, self._attributes_of(message.destination, failed))
        return outcome

    def _attributes_of(self, destination: str, failure: str | None) -> Attributes:
        key = (destination, failure)
        attributes = self._attributes.get(key)
        if attributes is None:
            attributes = {**self._base, names.DESTINATION: destination}
            if failure is not None:
                attributes[names.ERROR_TYPE] = failure
            self._attributes[key] = attributes
        return attributes
