"""``listeners dlt show`` and ``listeners dlt replay``: inspect and replay dead letters on a real broker.

The dead letters are chosen by listener (its transport and dead-letter topics or queue) or named
directly (``--topic`` a Kafka dead-letter topic, ``--queue`` a RabbitMQ dead-letter queue); the
container's config says how to connect. Nothing connects to the embedded broker: its dead letters
live inside the running app.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, NoReturn, TypeVar

import click

from listeners.cli.dlt_output import ReplayProgress, print_summaries, render_summary, total_line
from listeners.cli.main import _common, _exit, _prepare, dlt
from listeners.deadletter.replay import (
    ReplayError,
    ReplayReport,
    ReplayTarget,
    parse_target,
    replay_dead_letters,
)
from listeners.deadletter.store import DeadLetterStore
from listeners.deadletter.summary import DeadLetterFilter, DeadLetterListing, list_dead_letters, parse_time
from listeners.exceptions import ListenersError
from listeners.spec import TransportKind

T = TypeVar("T")


@dataclass(frozen=True)
class Selection:
    """Which dead letters: a transport and its dead-letter topics or queue."""

    kind: TransportKind
    destinations: tuple[str, ...]


def _selection(function: Any) -> Any:
    function = click.option("--queue", default=None, help="A RabbitMQ dead-letter queue, e.g. mails.dlq.")(
        function
    )
    function = click.option("--topic", default=None, help="A Kafka dead-letter topic, e.g. orders-dlt.")(
        function
    )
    return click.option("--listener", default=None, help="The listener whose dead letters to use.")(function)


def _filters(function: Any) -> Any:
    function = click.option("--key", default=None, help="Only dead letters with this key (Kafka).")(function)
    function = click.option("--until", default=None, help="Dead-lettered before (ISO-8601 or e.g. 30m ago).")(
        function
    )
    function = click.option("--since", default=None, help="Dead-lettered at or after (ISO-8601 or e.g. 2h).")(
        function
    )
    return click.option(
        "--exception", default=None, help="Exception class: fully qualified or a suffix (PaymentDeclined)."
    )(function)


@dlt.command()
@_common
@_selection
@click.option("--limit", type=click.IntRange(min=1), default=50, show_default=True, help="Show at most N.")
@_filters
def show(
    target: str, profiles: tuple[str, ...], config_dir: str | None, app_dir: str, **options: Any
) -> None:
    """Print the dead letters of a listener, topic or queue (taking none of them)."""
    container = _prepare(target, profiles, config_dir, app_dir)
    selection = _select(container, options["listener"], options["topic"], options["queue"])
    matching = _filter(selection.kind, options)

    async def list_all(store: DeadLetterStore) -> list[DeadLetterListing]:
        return [
            await list_dead_letters(store, source, matching=matching, limit=options["limit"])
            for source in selection.destinations
        ]

    for listing in _with_store(container, selection.kind, list_all):
        for summary in listing.shown:
            click.echo(render_summary(summary))
        click.echo(total_line(listing, options["limit"]))


@dlt.command()
@_common
@_selection
@click.option("--to", "to", default=None, help="Replay here instead: a topic, or exchange/routing.key.")
@_filters
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Replay at most N.")
@click.option("--dry-run", is_flag=True, help="Print what would be replayed; publish nothing.")
@click.option(
    "--rate", type=click.FloatRange(min=0, min_open=True), default=None, help="At most N per second."
)
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
def replay(
    target: str, profiles: tuple[str, ...], config_dir: str | None, app_dir: str, **options: Any
) -> None:
    """Republish dead letters to where they came from (or --to) as first attempts."""
    container = _prepare(target, profiles, config_dir, app_dir)
    selection = _select(container, options["listener"], options["topic"], options["queue"])
    matching = _filter(selection.kind, options)
    dry_run: bool = options["dry_run"]
    to = parse_target(selection.kind, options["to"]) if options["to"] else None
    if not dry_run and not options["yes"]:
        _confirm(selection, to)
    reports: list[ReplayReport] = []
    failure: ReplayError | None = None

    async def replay_all(store: DeadLetterStore) -> None:
        nonlocal failure
        limit: int | None = options["limit"]
        for source in selection.destinations:
            progress = ReplayProgress(source, dry_run)
            try:
                report = await replay_dead_letters(
                    store, source, matching=matching, to=to, limit=limit, dry_run=dry_run,
                    rate=options["rate"], on_letter=progress.letter, on_start=progress.start,
                )  # fmt: skip
            except ReplayError as error:
                failure = error
                if error.report is not None:
                    reports.append(error.report)
                return
            finally:
                progress.finish()
            reports.append(report)
            if limit is not None:
                limit -= report.replayed
                if limit <= 0:
                    return

    _with_store(
        container,
        selection.kind,
        replay_all,
        on_error=lambda: print_summaries(reports, to, dry_run, kind=selection.kind),
    )
    print_summaries(reports, to, dry_run, kind=selection.kind)
    if failure is not None:
        _exit(failure)


def _select(container: Any, listener: str | None, topic: str | None, queue: str | None) -> Selection:
    from listeners.deadletter.naming import kafka_dead_letter_topic, rabbit_dead_letter_queue
    from starter.application import plan

    given = [
        name for name, value in (("--listener", listener), ("--topic", topic), ("--queue", queue)) if value
    ]
    if len(given) != 1:
        what = "give only one of" if given else "name the dead letters with one of"
        _fail(f"{what} --listener ID, --topic DLT_TOPIC and --queue DLQ")
    if topic:
        return Selection("kafka", (topic,))
    if queue:
        return Selection("rabbit", (queue,))
    try:
        resolved = {each.listener_id: each for each in plan(container).listeners}
    except ListenersError as error:
        _exit(error)
    found = resolved.get(listener or "")
    if found is None:
        _fail(f"no listener {listener!r}; the listeners are: {', '.join(resolved) or '(none)'}")
    endpoint = found.endpoint
    if not endpoint.options.dead_letter.enabled:
        _fail(f"listener {listener} has dead letters disabled (dead_letter.enabled: false)")
    if endpoint.kind == "rabbit":
        return Selection("rabbit", (rabbit_dead_letter_queue(endpoint),))
    if not endpoint.sources:
        _fail(f"listener {listener} subscribes to a topic pattern: name its dead-letter topic with --topic")
    topics = dict.fromkeys(kafka_dead_letter_topic(endpoint, source) for source in endpoint.sources)
    return Selection("kafka", tuple(topics))


def _filter(kind: TransportKind, options: dict[str, Any]) -> DeadLetterFilter:
    now = time.time()
    times: dict[str, float | None] = {}
    for name in ("since", "until"):
        try:
            times[name] = parse_time(options[name], now) if options[name] else None
        except ValueError as error:
            _fail(f"--{name}: {error}")
    if kind == "rabbit" and (times["since"] is not None or times["until"] is not None):
        click.echo(
            "listeners: warning: RabbitMQ dead letters without a timestamp property (written by other "
            "publishers) never match --since/--until",
            err=True,
        )
    key = options["key"]
    return DeadLetterFilter(
        options["exception"], times["since"], times["until"], key.encode() if key else None
    )


def _confirm(selection: Selection, to: ReplayTarget | None) -> None:
    where = to.describe() if to is not None else "their original destinations"
    question = f"Replay the dead letters of {', '.join(selection.destinations)} to {where}?"
    try:
        confirmed = click.confirm(question, default=False, err=True)
    except click.Abort:
        click.echo(err=True)
        confirmed = False
    if not confirmed:
        _fail("replay not confirmed; pass --yes to replay without asking")


def _with_store(
    container: Any,
    kind: TransportKind,
    action: Callable[[DeadLetterStore], Awaitable[T]],
    on_error: Callable[[], None] | None = None,
) -> T:
    """Run ``action`` with the dead-letter store of the app's ``kind`` transport, then disconnect."""
    from listeners.transport.registry import TransportRegistry, dead_letter_store

    async def run() -> T:
        registry: TransportRegistry = container.transports()
        try:
            transport = registry.get(kind)
            if transport.name == "memory":
                setting = "kafka.bootstrap_servers" if kind == "kafka" else "rabbit.url"
                raise ListenersError(
                    f"listeners.{setting} is memory:// (the embedded broker), whose dead letters live only "
                    f"inside the running app; point it at the broker (config, --profile or environment)"
                )
            await registry.started(kind)
            return await action(dead_letter_store(transport))
        finally:
            await registry.close()

    try:
        return asyncio.run(run())
    except ListenersError as error:
        if on_error is not None:
            on_error()
        _exit(error)


def _fail(text: str) -> NoReturn:
    _exit(ListenersError(text))
