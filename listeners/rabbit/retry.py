"""Non-blocking retries on RabbitMQ through delay-tier queues (pure rules, shared by both transports).

A listener with ``retry.mode: non-blocking`` gets one durable queue per distinct back-off delay,
``<queue>.retry.<delayMs>`` (see :mod:`listeners.retry.destinations`), declared with
``x-message-ttl`` = the delay, ``x-dead-letter-exchange`` = ``""`` (the default exchange) and
``x-dead-letter-routing-key`` = the work queue. No plugin is needed: a failed message is republished
(confirmed) to its tier through the default exchange and the original is acknowledged only then;
RabbitMQ dead-letters it back to the work queue when its TTL runs out. A handler's own
``RetryLater(delay=...)`` gets a tier of exactly that delay, declared the first time it is needed.

**Jitter is not applied on RabbitMQ**: a tier is a queue with one TTL, so a retried message waits
exactly the un-jittered back-off delay of its tier (never less). The per-message ``expiration``
property is never used (it only expires at the head of a queue, so it would block shorter delays).

Headers on the republished message (original body, content type and headers kept otherwise):
``retry-count`` (attempts made so far, as text), ``x-original-exchange`` and
``x-original-routingKey`` (where the message first came from; kept if already there),
``x-exception-message`` (the latest failure, truncated), ``x-exception-fqcn`` and
``listeners-retry-started`` (the first failure, for ``retry.timeout``). The broker's own
dead-lettering headers (``x-death``, ``x-first-death-*``, ``x-last-death-*``) are not copied: the
broker writes them itself and a copy would only turn them into text. On consume, a message with
``retry-count`` gets ``attempt = retry-count + 1`` and its original exchange and routing key back,
so the handler and a later dead letter see where it was first published.
"""

from __future__ import annotations

from typing import Any

from listeners.deadletter.headers import BROKER_DEATH_HEADERS, decimal_int, exception_fqcn
from listeners.message import HeaderPairs, Headers, Message
from listeners.outcome import Retry
from listeners.retry.destinations import delay_ms
from listeners.retry.timeout import retry_started_header

RETRY_COUNT = "retry-count"
ORIGINAL_EXCHANGE = "x-original-exchange"
ORIGINAL_ROUTING_KEY = "x-original-routingKey"
EXCEPTION_MESSAGE = "x-exception-message"
EXCEPTION_FQCN = "x-exception-fqcn"
MAX_EXCEPTION_MESSAGE = 1024
"""Bytes of the exception message kept in ``x-exception-message`` (a header must fit in one frame)."""


def tier_ms(retry: Retry) -> int:
    """The tier a retry waits in: its un-jittered back-off delay, else the delay the handler asked for."""
    return delay_ms(retry.tier if retry.tier is not None else retry.delay)


def tier_queue_arguments(queue: str, tier: int) -> dict[str, Any]:
    """Arguments of the tier queue that holds messages ``tier`` ms, then dead-letters them to ``queue``."""
    return {
        "x-message-ttl": tier,
        "x-dead-letter-exchange": "",
        "x-dead-letter-routing-key": queue,
    }


def truncated(text: str, limit: int = MAX_EXCEPTION_MESSAGE) -> bytes:
    """``text`` as UTF-8, cut to at most ``limit`` bytes without splitting a character."""
    encoded = text.encode("utf-8")
    if len(encoded) <= limit:
        return encoded
    return encoded[:limit].decode("utf-8", errors="ignore").encode("utf-8")


def retry_headers(message: Message, retry: Retry) -> HeaderPairs:
    """The headers to republish ``message`` to its tier with, for attempt ``retry.next_attempt``."""
    headers = message.headers
    replaced: dict[str, bytes] = {RETRY_COUNT: str(retry.next_attempt - 1).encode()}
    # Back from a tier, the message arrived by the queue's name: its x-original-* name where it first
    # came from. Otherwise they are a foreign publisher's (or garbage) and are written anew.
    through_tiers = came_through_tiers(headers)
    if not through_tiers or ORIGINAL_EXCHANGE not in headers:
        replaced[ORIGINAL_EXCHANGE] = (message.exchange or "").encode()
    if not through_tiers or ORIGINAL_ROUTING_KEY not in headers:
        replaced[ORIGINAL_ROUTING_KEY] = (message.routing_key or "").encode()
    replaced[EXCEPTION_MESSAGE] = truncated(str(retry.error))
    replaced[EXCEPTION_FQCN] = exception_fqcn(retry.error).encode()
    kept = tuple(
        (name, value)
        for name, value in headers.pairs
        if name not in replaced and not name.startswith(BROKER_DEATH_HEADERS)
    )
    return (*kept, *replaced.items(), *retry_started_header(message))


def restore_retried(message: Message) -> None:
    """A message carrying ``retry-count``: set its attempt and original exchange / routing key.

    Call only when the message has headers (the common first delivery has none to look at). A
    malformed count counts as a first attempt; nothing here raises.
    """
    headers = message.headers
    count = headers.get(RETRY_COUNT)
    if count is None:
        return
    message.attempt = attempt_after(count)
    if message.attempt == 1:
        return  # not a count of ours: its x-original-* headers are not ours either
    exchange = headers.get(ORIGINAL_EXCHANGE)
    if exchange is not None:
        message.exchange = exchange.decode("utf-8", errors="replace")
    routing_key = headers.get(ORIGINAL_ROUTING_KEY)
    if routing_key is not None:
        message.routing_key = routing_key.decode("utf-8", errors="replace")


def came_through_tiers(headers: Headers) -> bool:
    """Whether ``headers`` carry a retry count this framework wrote (one or more retries made)."""
    count = headers.get(RETRY_COUNT)
    return count is not None and attempt_after(count) > 1


def attempt_after(count: bytes) -> int:
    """``retry-count`` attempts made -> the attempt this delivery is (1 when malformed)."""
    made = decimal_int(count)
    return made + 1 if made is not None and 0 <= made < 1_000_000_000 else 1
