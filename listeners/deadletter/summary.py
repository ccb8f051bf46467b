"""What a dead letter says about itself, read from its headers (pure), and filters over it.

Both header families are read whatever the transport: Spring Kafka's ``kafka_dlt-*`` (falling back to
the retry path's ``kafka_original-*`` / ``kafka_exception-*``) and Spring AMQP's ``x-exception-*`` /
``x-original-*``. For a header written more than once, the last value wins.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from listeners.deadletter.headers import binary_int, decimal_int
from listeners.deadletter.store import DeadLetterStore, StoredDeadLetter
from listeners.durations import parse_duration
from listeners.rabbit.retry import ORIGINAL_EXCHANGE, ORIGINAL_ROUTING_KEY, RETRY_COUNT
from listeners.retry.kafka_wire import ATTEMPTS

_ORIGINAL = ("kafka_dlt-original-", "kafka_original-")
_EXCEPTION = ("kafka_dlt-exception-", "kafka_exception-", "x-exception-")


@dataclass(frozen=True, slots=True)
class DeadLetterSummary:
    """One dead letter, as ``listeners dlt show`` prints it.

    ``retry_count`` is the number of attempts the dead letter records (RabbitMQ ``retry-count``,
    Kafka ``retry_topic-attempts`` after non-blocking retries); None when it records none.
    """

    position: str
    timestamp: float | None
    key: bytes | None
    exception_fqcn: str | None
    exception_message: str | None
    original_topic: str | None = None
    original_partition: int | None = None
    original_offset: int | None = None
    original_exchange: str | None = None
    original_routing_key: str | None = None
    retry_count: int | None = None

    @property
    def exception_name(self) -> str:
        """The class without its module: ``PaymentDeclined`` for ``billing.errors.PaymentDeclined``."""
        return (self.exception_fqcn or "").rsplit(".", 1)[-1]

    def describe_original(self) -> str:
        """``orders[2]@41``, ``exchange 'shop' routing key 'order.created'``, or ``-`` if unknown."""
        if self.original_topic is not None:
            where = f"[{self.original_partition}]" if self.original_partition is not None else ""
            at = f"@{self.original_offset}" if self.original_offset is not None else ""
            return f"{self.original_topic}{where}{at}"
        if self.original_exchange is not None or self.original_routing_key is not None:
            exchange, routing_key = self.original_exchange or "", self.original_routing_key or ""
            return f"exchange {exchange!r} routing key {routing_key!r}"
        return "-"


def summarize(letter: StoredDeadLetter) -> DeadLetterSummary:
    """The summary of ``letter`` from its headers; malformed headers read as absent."""
    index = dict(letter.headers)
    message = _text(_first(index, _EXCEPTION, "message"))
    return DeadLetterSummary(
        position=letter.position,
        timestamp=letter.timestamp,
        key=letter.key,
        exception_fqcn=_text(_first(index, _EXCEPTION, "fqcn")),
        exception_message=message.splitlines()[0] if message else message,
        original_topic=_text(_first(index, _ORIGINAL, "topic")),
        original_partition=binary_int(_first(index, _ORIGINAL, "partition")),
        original_offset=binary_int(_first(index, _ORIGINAL, "offset")),
        original_exchange=_text(index.get(ORIGINAL_EXCHANGE)),
        original_routing_key=_text(index.get(ORIGINAL_ROUTING_KEY)),
        retry_count=decimal_int(index.get(RETRY_COUNT))
        if RETRY_COUNT in index
        else binary_int(index.get(ATTEMPTS)),
    )


@dataclass(frozen=True, slots=True)
class DeadLetterFilter:
    """Which dead letters to show or replay; every given criterion must hold.

    ``exception`` matches the exception's fully qualified name or a dotted suffix of it (``Flaky``,
    ``errors.Flaky``); ``since``/``until`` (epoch seconds, inclusive/exclusive) bound when it was
    dead-lettered (a dead letter without a known time never matches a time bound); ``key`` is the
    exact message key.
    """

    exception: str | None = None
    since: float | None = None
    until: float | None = None
    key: bytes | None = None

    @property
    def active(self) -> bool:
        return any(value is not None for value in (self.exception, self.since, self.until, self.key))

    def matches(self, summary: DeadLetterSummary) -> bool:
        if self.exception is not None and not exception_matches(self.exception, summary.exception_fqcn):
            return False
        if self.key is not None and summary.key != self.key:
            return False
        if self.since is None and self.until is None:
            return True
        if summary.timestamp is None:
            return False
        if self.since is not None and summary.timestamp < self.since:
            return False
        return self.until is None or summary.timestamp < self.until


@dataclass(frozen=True, slots=True)
class DeadLetterListing:
    """The dead letters of ``source`` that matched, up to a limit, and how many were looked at."""

    source: str
    total: int
    scanned: int
    shown: tuple[DeadLetterSummary, ...]
    limited: bool


async def list_dead_letters(
    store: DeadLetterStore, source: str, *, matching: DeadLetterFilter | None = None, limit: int | None = None
) -> DeadLetterListing:
    """Browse ``source`` (changing nothing) and summarise the dead letters that match, up to ``limit``."""
    matching = matching or DeadLetterFilter()
    shown: list[DeadLetterSummary] = []
    scanned = 0
    limited = False
    async with store.browse(source, since=matching.since) as browse:
        total = browse.total
        async for letter in browse:
            if limit is not None and len(shown) >= limit:
                limited = True
                break
            scanned += 1
            summary = summarize(letter)
            if matching.matches(summary):
                shown.append(summary)
    return DeadLetterListing(
        source, max(total, scanned) if limited else scanned, scanned, tuple(shown), limited
    )


def exception_matches(name: str, fqcn: str | None) -> bool:
    """``name`` is ``fqcn`` or a suffix of it that starts at a dot."""
    if not fqcn or not name:
        return False
    return fqcn == name or fqcn.endswith("." + name.lstrip("."))


def parse_time(text: str, now: float) -> float:
    """Epoch seconds for ISO-8601 (``2025-11-26T14:00:00Z``; without an offset, local time) or a
    duration before ``now`` (``90s``, ``15m``, ``2h``, ``7d``). Raises ValueError otherwise."""
    text = text.strip()
    try:
        return now - float(parse_duration(text))
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(
            f"invalid time {text!r}: use ISO-8601 (2025-11-26T14:00:00Z) or a duration ago (30m, 2h, 7d)"
        ) from None
    return (moment.astimezone() if moment.tzinfo is None else moment).timestamp()


def format_time(timestamp: float | None) -> str:
    """``2025-11-26T14:03:12.345Z`` (UTC, milliseconds), or ``-``."""
    if timestamp is None:
        return "-"
    moment = datetime.fromtimestamp(timestamp, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _first(index: Mapping[str, bytes], prefixes: tuple[str, ...], field: str) -> bytes | None:
    for prefix in prefixes:
        value = index.get(prefix + field)
        if value is not None:
            return value
    return None


def _text(value: bytes | None) -> str | None:
    return None if value is None else value.decode("utf-8", errors="replace")
