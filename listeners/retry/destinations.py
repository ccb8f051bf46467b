"""Where non-blocking retries wait: one delay tier per distinct back-off delay (pure naming rules).

A listener with ``attempts: 4`` and a back-off of 1 s doubling gets the tiers 1 s, 2 s and 4 s; equal
delays (a fixed back-off) share one tier. Kafka tiers are topics ``<topic>-retry-<delayMs>`` (Spring
Kafka's names), RabbitMQ tiers are queues ``<queue>.retry.<delayMs>`` whose ``x-message-ttl`` is the
delay and whose dead-letter exchange routes back to the work queue. Tiers are named from the delay
before jitter; the exact due time of each retried message travels in its headers.
"""

from __future__ import annotations

import re

from listeners.exceptions import TransportUnavailableError
from listeners.outcome import Retry
from listeners.retry.backoff import BackOffPolicy
from listeners.spec import ListenerOptions

KAFKA_RETRY_INFIX = "-retry-"
RABBIT_RETRY_INFIX = ".retry."
_KAFKA_RETRY_TOPIC = re.compile(r"^(?P<source>.+)-retry-\d+$")


def delay_ms(seconds: float) -> int:
    """A delay as whole milliseconds, as tier names carry it."""
    return max(0, round(seconds * 1000))


def retry_tiers(options: ListenerOptions) -> tuple[int, ...]:
    """The distinct tier delays (ms, ascending) a listener's non-blocking retries go through."""
    retry = options.retry
    if retry.mode != "non-blocking" or retry.attempts < 2:
        return ()
    policy = BackOffPolicy.from_spec(retry.backoff)
    return tuple(sorted({delay_ms(policy.base_delay(failed)) for failed in range(1, retry.attempts)}))


def tier_for(tiers: tuple[int, ...], wanted_ms: int) -> int:
    """The tier to wait in for ``wanted_ms``: the longest tier not longer than it (else the shortest).

    A message never runs early: consumers of a tier also wait for the due time in its headers, so a
    message asking for more than its tier's delay (a handler's ``RetryLater(delay=...)``) waits longer.
    """
    fitting = [tier for tier in tiers if tier <= wanted_ms]
    return fitting[-1] if fitting else tiers[0]


def kafka_retry_tier(tiers: tuple[int, ...], retry: Retry) -> int:
    """The Kafka tier a retry waits in: its back-off tier, or for a handler's own delay (or a tier the
    listener no longer has) the longest tier within the delay. The due time still says when it runs."""
    if not tiers:
        raise TransportUnavailableError("a non-blocking retry needs retry topics (retry.mode non-blocking)")
    tier = delay_ms(retry.tier) if retry.tier is not None else -1
    return tier if tier in tiers else tier_for(tiers, delay_ms(retry.delay))


def kafka_retry_topic(topic: str, tier_ms: int) -> str:
    """``orders`` and 2000 ms -> ``orders-retry-2000``."""
    return f"{topic}{KAFKA_RETRY_INFIX}{tier_ms}"


def kafka_retry_topics(options: ListenerOptions, topic: str) -> tuple[str, ...]:
    """Every retry topic of ``topic`` for a listener with ``options`` (none unless non-blocking)."""
    return tuple(kafka_retry_topic(topic, tier) for tier in retry_tiers(options))


def kafka_source_topic(topic: str, original: str | None = None) -> str:
    """The topic a record first came from: ``original`` (from its headers) if known, else ``topic``
    without a ``-retry-<n>`` suffix."""
    if original:
        return original
    match = _KAFKA_RETRY_TOPIC.match(topic)
    return match.group("source") if match else topic


def rabbit_retry_queue(queue: str, tier_ms: int) -> str:
    """``notifications`` and 2000 ms -> ``notifications.retry.2000``."""
    return f"{queue}{RABBIT_RETRY_INFIX}{tier_ms}"
