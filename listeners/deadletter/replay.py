"""Replaying dead letters: where each goes, with which headers, and the loop that does it.

A replayed message starts again at attempt 1 with a fresh retry budget: every header is kept byte for
byte and in order except the retry state (:data:`RETRY_STATE_HEADERS`, :data:`RETRY_STATE_PREFIXES`),
and two headers mark the replay: ``listeners-replay-count`` (ASCII decimal, one more than before) and
``listeners-replayed-at`` (epoch ms, ASCII decimal). The diagnostic headers (``kafka_dlt-*``,
``x-exception-*``) stay; a later dead letter writes its own after them, and the last one wins.

It goes to where it was first published (Kafka ``kafka_dlt-original-topic``, the key choosing the
partition; RabbitMQ ``x-original-exchange`` + ``x-original-routingKey``), or to ``to``: a topic, or
for RabbitMQ ``exchange/routing.key`` or a bare routing key on the default exchange (as ``@send_to``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from listeners.deadletter.headers import BROKER_DEATH_HEADERS, decimal_int
from listeners.deadletter.store import DeadLetterStore, StoredDeadLetter
from listeners.deadletter.summary import DeadLetterFilter, DeadLetterSummary, summarize
from listeners.exceptions import ListenersError
from listeners.message import HeaderPairs
from listeners.rabbit.retry import ORIGINAL_EXCHANGE, ORIGINAL_ROUTING_KEY, RETRY_COUNT
from listeners.retry.kafka_wire import ATTEMPTS, BACKOFF_TIMESTAMP, ORIGINAL_TIMESTAMP
from listeners.retry.timeout import RETRY_STARTED
from listeners.spec import ForwardTarget, TransportKind
from listeners.transport.base import Envelope

REPLAY_COUNT = "listeners-replay-count"
REPLAYED_AT = "listeners-replayed-at"

RETRY_STATE_HEADERS = frozenset(
    {ATTEMPTS, BACKOFF_TIMESTAMP, ORIGINAL_TIMESTAMP, RETRY_COUNT, ORIGINAL_EXCHANGE, ORIGINAL_ROUTING_KEY,
     RETRY_STARTED, REPLAY_COUNT, REPLAYED_AT}
)  # fmt: skip
"""Dropped on replay (the replay markers are written again at the end)."""
RETRY_STATE_PREFIXES = ("kafka_original-", "kafka_exception-", *BROKER_DEATH_HEADERS)


class ReplayError(ListenersError):
    """A dead letter could not be replayed: it has no destination, or republishing it failed.

    ``report`` says what the run did before it stopped.
    """

    def __init__(self, text: str, report: ReplayReport | None = None) -> None:
        super().__init__(text)
        self.report = report


def replay_count(headers: HeaderPairs) -> int:
    """How often a message was replayed before: its last ``listeners-replay-count`` (0 if none or bad)."""
    count = decimal_int(dict(headers).get(REPLAY_COUNT))
    return count if count is not None and count >= 0 else 0


def replay_headers(headers: HeaderPairs, now_ms: int) -> HeaderPairs:
    """``headers`` without the retry state, plus the replay markers."""
    kept = tuple(
        (name, value)
        for name, value in headers
        if name not in RETRY_STATE_HEADERS and not name.startswith(RETRY_STATE_PREFIXES)
    )
    return (
        *kept,
        (REPLAY_COUNT, str(replay_count(headers) + 1).encode()),
        (REPLAYED_AT, str(now_ms).encode()),
    )


@dataclass(frozen=True, slots=True)
class ReplayTarget:
    """Where a replayed message goes: a Kafka topic, or a RabbitMQ exchange and routing key."""

    destination: str
    routing_key: str = ""
    kind: TransportKind = "kafka"

    def describe(self) -> str:
        if self.kind == "kafka":
            return self.destination
        if self.destination == "":
            return f"queue {self.routing_key!r} (default exchange)"
        return f"exchange {self.destination!r} routing key {self.routing_key!r}"


def parse_target(kind: TransportKind, to: str) -> ReplayTarget:
    """``--to``: a topic, or ``exchange/routing.key`` / a bare routing key on the default exchange."""
    _, destination, routing_key = ForwardTarget(to).resolve(kind)
    return ReplayTarget(destination, routing_key, kind)


def replay_target(kind: TransportKind, summary: DeadLetterSummary, to: ReplayTarget | None) -> ReplayTarget:
    """``to``, else where the dead letter was first published; raises ReplayError if unknown."""
    if to is not None:
        return to
    if kind == "kafka":
        if summary.original_topic:
            return ReplayTarget(summary.original_topic, "", "kafka")
        missing = "no kafka_dlt-original-topic header"
    else:
        if summary.original_exchange is not None and summary.original_routing_key is not None:
            return ReplayTarget(summary.original_exchange, summary.original_routing_key, "rabbit")
        missing = "no x-original-exchange / x-original-routingKey headers"
    raise ReplayError(f"{summary.position} has {missing}: name a destination with --to")


def replay_envelope(letter: StoredDeadLetter, target: ReplayTarget, now_ms: int) -> Envelope:
    """The message to publish for ``letter``: its body, key and content type, the replay headers."""
    return Envelope(
        target.destination,
        letter.body,
        key=letter.key,
        routing_key=target.routing_key,
        headers=replay_headers(letter.headers, now_ms),
        content_type=letter.content_type,
    )


@dataclass
class ReplayReport:
    """What one replay run over one destination did."""

    source: str
    total: int = 0
    """Dead letters in ``source`` when the run started (those looked at, if the broker said fewer)."""
    scanned: int = 0
    replayed: int = 0
    unmatched: int = 0
    limited: bool = False
    targets: list[str] = field(default_factory=list)


Progress = Callable[[StoredDeadLetter, DeadLetterSummary, ReplayTarget | None], None]
"""Called after each dead letter is looked at: with its target if it was (or would be) replayed."""


async def replay_dead_letters(
    store: DeadLetterStore,
    source: str,
    *,
    matching: DeadLetterFilter | None = None,
    to: ReplayTarget | None = None,
    limit: int | None = None,
    dry_run: bool = False,
    rate: float | None = None,
    on_letter: Progress | None = None,
    on_start: Callable[[int], None] | None = None,
) -> ReplayReport:
    """Replay the dead letters of ``source`` that match, in order, up to ``limit``.

    Each is republished (confirmed) and then removed where the store can; the first failure stops
    the run with :class:`ReplayError`, leaving that dead letter in place. ``rate`` (messages per
    second) paces the publishes; ``dry_run`` publishes nothing. ``on_start`` gets the browse's total.
    """
    matching = matching or DeadLetterFilter()
    report = ReplayReport(source)
    started = time.monotonic()
    async with store.browse(source, since=matching.since) as browse:
        report.total = browse.total
        if on_start is not None:
            on_start(browse.total)
        async for letter in browse:
            if limit is not None and report.replayed >= limit:
                report.limited = True
                break
            report.scanned += 1
            report.total = max(report.total, report.scanned)
            summary = summarize(letter)
            if not matching.matches(summary):
                report.unmatched += 1
                if on_letter is not None:
                    on_letter(letter, summary, None)
                continue
            try:
                target = replay_target(store.kind, summary, to)
            except ReplayError as error:
                error.report = report
                raise
            if not dry_run:
                if rate:
                    await asyncio.sleep(max(0.0, started + report.replayed / rate - time.monotonic()))
                envelope = replay_envelope(letter, target, int(time.time() * 1000))
                try:
                    await store.replay(letter, envelope)
                except Exception as error:
                    raise ReplayError(
                        f"replaying {letter.position} to {target.describe()} failed: {error}; "
                        f"it stays in {source}",
                        report,
                    ) from error
            report.replayed += 1
            if target.describe() not in report.targets:
                report.targets.append(target.describe())
            if on_letter is not None:
                on_letter(letter, summary, target)
        if not report.limited:
            report.total = report.scanned
    return report
