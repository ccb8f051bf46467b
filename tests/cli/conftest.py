"""Fixtures for the CLI tests: a marker directory per test and processes killed at teardown."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

from tests.cli.apps.markers import MARKERS_ENV
from tests.cli.helpers import CliProcess, StartCli


@pytest.fixture
def markers(tmp_path: Path) -> Path:
    """An empty directory the test apps write marker files to (passed in ``CLI_TEST_MARKERS``)."""
    directory = tmp_path / "markers"
    directory.mkdir()
    return directory


@pytest.fixture
def start_cli() -> Iterator[StartCli]:
    """Start ``python -m listeners ARGS...``; every process still running at teardown is killed."""
    started: list[CliProcess] = []

    def start(*args: str, env: Mapping[str, str] | None = None) -> CliProcess:
        process = CliProcess(list(args), env)
        started.append(process)
        return process

    yield start
    for process in started:
        process.kill()


@pytest.fixture
def marker_env(markers: Path) -> dict[str, str]:
    return {MARKERS_ENV: str(markers)}
