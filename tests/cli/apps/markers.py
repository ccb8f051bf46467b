"""How the test apps (run in a subprocess) talk to the test: marker files and environment variables.

The test sets :data:`MARKERS_ENV` to a fresh directory. An app writes ``<name>`` files there and
waits for files the test creates, polling the file system. :data:`FAIL_CLEANUP_ENV` makes the apps'
resources raise when they are shut down; :data:`PUBLISH_ENV` says where the jobs app publishes.
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

MARKERS_ENV = "CLI_TEST_MARKERS"
FAIL_CLEANUP_ENV = "CLI_TEST_FAIL_CLEANUP"
PUBLISH_ENV = "CLI_TEST_PUBLISH"
"""Topics (comma-separated) the jobs app publishes one job to at startup."""
RELEASE = "release"
MAX_WAIT = 60.0
"""A handler gives up waiting for the release file after this long, so no process outlives its test."""


def marker_dir() -> Path:
    return Path(os.environ[MARKERS_ENV])


def write_marker(name: str) -> None:
    (marker_dir() / name).write_text(name, encoding="utf-8")


async def wait_for_release() -> None:
    release = marker_dir() / RELEASE
    deadline = time.monotonic() + MAX_WAIT
    # The test process creates the file: there is no event to await, so poll the file system.
    while not release.exists() and time.monotonic() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.01)


def wait_for_release_blocking() -> None:
    release = marker_dir() / RELEASE
    deadline = time.monotonic() + MAX_WAIT
    while not release.exists() and time.monotonic() < deadline:
        time.sleep(0.01)


def fail_cleanup_if_asked(resource: str) -> None:
    """Raise, as a resource with a bug in its clean-up would, when the test set :data:`FAIL_CLEANUP_ENV`."""
    if os.environ.get(FAIL_CLEANUP_ENV):
        raise RuntimeError(f"{resource} clean-up failed on purpose")
