"""A container with a resource that publishes in the background while the app runs, like the demo."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

from dependency_injector import containers, providers

from listeners import KafkaPublisher
from starter import ListenersContainer
from tests.cli.apps.markers import fail_cleanup_if_asked, write_marker

log = logging.getLogger("tests.cli.apps.unreachable")


async def publish_orders(publisher: KafkaPublisher) -> None:
    await publisher.send("orders", "o-1")
    write_marker("feeder.published")


async def feeder(publisher: KafkaPublisher) -> AsyncIterator[None]:
    """Resource: marks ``feeder.started`` and ``feeder.stopped`` around a background publisher."""
    write_marker("feeder.started")
    task = asyncio.ensure_future(publish_orders(publisher))
    try:
        yield None
    finally:
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            pass
        except Exception as error:  # the publish failed; shutting down is what matters now
            log.info("feeder: publishing failed: %s", error)
        write_marker("feeder.stopped")
        fail_cleanup_if_asked("feeder")


class Container(ListenersContainer):
    wiring_config = containers.WiringConfiguration(modules=[".handlers"])

    feeder = providers.Resource(feeder, publisher=ListenersContainer.kafka_publisher)


container = Container()
