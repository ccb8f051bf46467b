"""Listeners that mark ``<id>.started``, wait for the ``release`` file, then mark ``<id>.finished``."""

from __future__ import annotations

import logging

from listeners import kafka_listener
from tests.cli.apps.markers import wait_for_release, wait_for_release_blocking, write_marker

log = logging.getLogger("tests.cli.apps.jobs")


@kafka_listener("work", id="worker")
async def work(job: str) -> None:
    write_marker("worker.started")
    log.info("worker started %s", job)
    await wait_for_release()
    write_marker("worker.finished")
    log.info("worker finished %s", job)


@kafka_listener("sync-work", id="sync-worker")
def sync_work(job: str) -> None:
    """Sync: runs in the handler thread pool, where cancelling cannot interrupt it."""
    write_marker("sync-worker.started")
    log.info("sync-worker started %s", job)
    wait_for_release_blocking()
    write_marker("sync-worker.finished")
    log.info("sync-worker finished %s", job)
