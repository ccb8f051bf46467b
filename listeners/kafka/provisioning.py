"""Creating topics with the admin client (provisioning of listeners' topics and of delay topics)."""

from __future__ import annotations

import contextlib
import logging

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from listeners.kafka.clients import common_options
from listeners.kafka.config import KafkaConfig

log = logging.getLogger("listeners.kafka")


async def create_topics(admin: AIOKafkaAdminClient, topics: list[NewTopic]) -> None:
    """Create ``topics`` on a started admin client; one another instance created first counts as made."""
    if not topics:
        return
    with contextlib.suppress(TopicAlreadyExistsError):
        await admin.create_topics(topics)
    log.info("created topics %s", ", ".join(topic.name for topic in topics))


async def create_topics_now(config: KafkaConfig, topics: list[NewTopic]) -> None:
    """:func:`create_topics` with an admin client of its own."""
    if not topics:
        return
    admin = AIOKafkaAdminClient(**common_options(config))
    try:
        await admin.start()
        await create_topics(admin, topics)
    finally:
        await admin.close()
