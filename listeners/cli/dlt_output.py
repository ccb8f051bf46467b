"""What ``listeners dlt`` prints: dead-letter blocks, totals, replay lines, progress and summaries."""

from __future__ import annotations

import sys
from typing import Any

import click

from listeners.deadletter.replay import ReplayReport, ReplayTarget
from listeners.deadletter.store import StoredDeadLetter
from listeners.deadletter.summary import DeadLetterListing, DeadLetterSummary, format_time


class ReplayProgress:
    """Per-letter lines on stdout; a progress bar on stderr when publishing.

    On a terminal showing both, the per-letter lines are left out while the bar runs (they would
    tear it apart); redirected stdout keeps them as a record of what was replayed.
    """

    def __init__(self, source: str, dry_run: bool) -> None:
        self._source = source
        self._dry_run = dry_run
        self._bar: Any = None
        self._lines = dry_run or not (sys.stdout.isatty() and sys.stderr.isatty())

    def start(self, total: int) -> None:
        if not self._dry_run:
            self._bar = click.progressbar(length=total, label=f"replaying {self._source}", file=sys.stderr)

    def letter(
        self, letter: StoredDeadLetter, summary: DeadLetterSummary, target: ReplayTarget | None
    ) -> None:
        if target is not None and self._lines:
            verb = "would replay" if self._dry_run else "replayed"
            click.echo(f"{verb} {letter.position} ({summary.exception_fqcn or '-'}) to {target.describe()}")
        if self._bar is not None:
            self._bar.update(1)

    def finish(self) -> None:
        if self._bar is not None:
            self._bar.render_finish()


def print_summaries(
    reports: list[ReplayReport], to: ReplayTarget | None, dry_run: bool, *, kind: str
) -> None:
    for report in reports:
        where = (
            to.describe() if to is not None else ", ".join(report.targets) or "their original destinations"
        )
        verb = "would replay" if dry_run else "replayed"
        line = f"{verb} {report.replayed} of {report.total} dead letters from {report.source} to {where}"
        if report.unmatched:
            line += f"; {report.unmatched} did not match the filters"
        if report.limited:
            line += "; stopped at --limit"
        if dry_run:
            line += " (dry run: nothing was published)"
        elif kind == "kafka":
            line += "; Kafka dead letters are not removed"
        elif kind == "rabbit" and report.replayed:
            line += f"; the replayed ones were removed from {report.source}"
        click.echo(line)


def render_summary(summary: DeadLetterSummary) -> str:
    key = "-" if summary.key is None else summary.key.decode("utf-8", errors="backslashreplace")
    retries = "-" if summary.retry_count is None else str(summary.retry_count)
    return (
        f"{summary.position}  {format_time(summary.timestamp)}  key={key}  attempts={retries}\n"
        f"  {summary.exception_fqcn or '-'}: {summary.exception_message or ''}\n"
        f"  original: {summary.describe_original()}"
    )


def total_line(listing: DeadLetterListing, limit: int) -> str:
    line = f"total: {listing.total} dead letters in {listing.source}, {len(listing.shown)} shown"
    unmatched = listing.scanned - len(listing.shown)
    if unmatched:
        line += f", {unmatched} did not match the filters"
    if listing.limited:
        line += f" (stopped at --limit {limit})"
    return line
