"""Fixtures of the fault-injection suite: worker processes, barriers, the oracle, the session summary."""

from __future__ import annotations

from collections.abc import AsyncIterator, Generator, Iterator
from pathlib import Path
from typing import Any

import aio_pika
import pytest

from tests.faults.barriers import Barrier
from tests.faults.oracle import RESULTS, Oracle, summary_table
from tests.faults.workers import Workers


@pytest.fixture
def workers(tmp_path: Path) -> Iterator[Workers]:
    """Starts worker processes; every one still running at the end is killed."""
    started = Workers(tmp_path / "workers")
    try:
        yield started
    finally:
        started.cleanup()


@pytest.fixture
async def queues() -> AsyncIterator[list[tuple[str, str]]]:
    """``(url, queue)`` pairs to delete after the test.

    The scenarios' queues are not named like the other tests' (``<name>-<10 hex>``) on purpose: the
    end of every test session deletes all queues named so on the shared broker, which would delete
    a running scenario's queue, with its messages, when another session ends meanwhile.
    """
    declared: list[tuple[str, str]] = []
    yield declared
    for url, name in declared:
        connection = await aio_pika.connect(url)
        try:
            await (await connection.channel()).queue_delete(name)
        finally:
            await connection.close()


@pytest.fixture
def barrier(tmp_path: Path) -> Barrier:
    return Barrier(tmp_path / "barrier")


@pytest.fixture
async def oracle(postgres: str, request: pytest.FixtureRequest) -> AsyncIterator[Oracle]:
    """The scenario's oracle, its tables in a fresh schema (dropped afterwards)."""
    checked = Oracle(postgres, request.node.name.removeprefix("test_"))
    await checked.create()
    try:
        yield checked
    finally:
        await checked.drop()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[Any]) -> Generator[None, Any, Any]:
    """A failing scenario's report ends with the tail of each worker's log."""
    report = yield
    started = getattr(item, "funcargs", {}).get("workers")
    if report.failed and isinstance(started, Workers) and started.started:
        report.sections.append(("worker logs", started.report()))
    return report


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not RESULTS:
        return
    terminalreporter.section("fault scenarios (oracle)")
    for line in summary_table(RESULTS.values()):
        terminalreporter.write_line(line)
