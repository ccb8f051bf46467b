"""The overall retry timeout: when a message's retries must stop, counted from its first failure.

``retry.timeout`` bounds how long a message keeps being retried. A failed attempt whose next attempt
would start later than ``timeout`` after the message's *first failure* is dead-lettered at once
instead (as Spring Kafka does, it never waits for a retry that would run past the deadline).

Counting from the first failure, rather than from when the message was produced, keeps a consumer
that catches up on a backlog from dead-lettering old messages on their first hiccup. The time of the
first failure travels with the message:

- in place (blocking retries) on :attr:`Message.retry_started`;
- through the broker (non-blocking retries) in the header ``listeners-retry-started`` (epoch ms,
  ASCII decimal), which both transports' retry republishing write on the first retry and keep after;
- records that Spring Kafka retried carry ``retry_topic-original-timestamp`` instead, which is read
  as Spring reads it (the original record's time).
"""

from __future__ import annotations

from listeners.deadletter.headers import binary_int, decimal_int
from listeners.message import Message
from listeners.retry.kafka_wire import ORIGINAL_TIMESTAMP

RETRY_STARTED = "listeners-retry-started"


def first_failure(message: Message, now: float) -> float:
    """Epoch seconds of the first failed attempt of ``message``, or ``now`` if this is the first."""
    if message.retry_started is not None:
        return message.retry_started
    headers = message.headers
    if headers.pairs:
        started = decimal_int(headers.get(RETRY_STARTED))
        if started is None:
            started = binary_int(headers.get(ORIGINAL_TIMESTAMP))
        if started is not None and started > 0:
            return started / 1000
    return now


def retry_started_header(message: Message) -> tuple[tuple[str, bytes], ...]:
    """The ``listeners-retry-started`` header to add when republishing ``message`` for a retry: none if
    it already has one (kept from its first retry) or its first failure is not known."""
    if message.retry_started is None or RETRY_STARTED in message.headers:
        return ()
    return ((RETRY_STARTED, str(int(message.retry_started * 1000)).encode()),)
