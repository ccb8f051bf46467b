"""The jobs app's container, given to the CLI as a class, a factory or an instance."""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator

from dependency_injector import containers, providers

from listeners import KafkaPublisher
from starter import ListenersContainer
from tests.cli.apps.markers import PUBLISH_ENV, fail_cleanup_if_asked

log = logging.getLogger("tests.cli.apps.jobs")


async def publish_jobs(publisher: KafkaPublisher) -> AsyncIterator[None]:
    """Resource: publish one job to each topic named in ``CLI_TEST_PUBLISH``, then stay idle."""
    for topic in filter(None, os.environ.get(PUBLISH_ENV, "").split(",")):
        await publisher.send(topic, f"job-for-{topic}")
        log.info("published a job to %s", topic)
    yield None
    fail_cleanup_if_asked("jobs")


class Container(ListenersContainer):
    wiring_config = containers.WiringConfiguration(modules=[".handlers"])

    jobs = providers.Resource(publish_jobs, publisher=ListenersContainer.kafka_publisher)


def make_container() -> Container:
    return Container()


def make_nothing() -> int:
    """A factory that does not return a container."""
    return 42


container = Container()
plain_container = containers.DynamicContainer()
"""A dependency-injector container that is not a ListenersContainer."""


def make_failing() -> Container:
    """A factory that raises, as one whose own setup has a bug would."""
    raise RuntimeError("factory broken on purpose")
