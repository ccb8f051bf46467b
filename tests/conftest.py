"""Fixtures shared by the whole run: real brokers, started once, failing loudly when unavailable."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import aio_pika
import pytest

from tests.support.brokers import KafkaBroker, kafka_broker
from tests.support.rabbit_tools import check_reachable, delete_test_entities, rabbit_url
from tests.support.stores import POSTGRES_ENV, REDIS_ENV, postgres_dsn, redis_url
from tests.support.stores import check_reachable as check_store_reachable


@pytest.fixture(scope="session")
def kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaBroker]:
    """The Kafka-protocol broker of this test run (Tansu, or LISTENERS_TEST_KAFKA)."""
    with kafka_broker(tmp_path_factory.mktemp("kafka")) as broker:
        yield broker


@pytest.fixture(scope="session")
def rabbit() -> Iterator[str]:
    """The URL of the run's RabbitMQ; queues and exchanges the tests declared are deleted at the end."""
    url = rabbit_url()
    check_reachable(url)
    yield url
    asyncio.run(delete_test_entities(url))


@pytest.fixture(scope="session")
def redis() -> str:
    """The URL of the run's Redis (LISTENERS_TEST_REDIS_URL); tests use unique key prefixes."""
    url = redis_url()
    check_store_reachable(
        "Redis", url, 6379, "'redis-server --daemonize yes' (or scripts/services.sh)", REDIS_ENV
    )
    return url


@pytest.fixture(scope="session")
def postgres() -> str:
    """The DSN of the run's PostgreSQL (LISTENERS_TEST_POSTGRES_DSN); tests use unique tables or keys."""
    dsn = postgres_dsn()
    check_store_reachable("PostgreSQL", dsn, 5432, "'scripts/services.sh'", POSTGRES_ENV)
    return dsn


@pytest.fixture
async def cleanup(rabbit: str) -> AsyncIterator[list[str]]:
    """Queue names to delete after the test: delay-tier and delayed-publish queues are not named like
    the tests' unique names, which the run's cleanup knows."""
    names: list[str] = []
    yield names
    connection = await aio_pika.connect(rabbit)
    try:
        channel = await connection.channel()
        for name in names:
            await channel.queue_delete(name)
    finally:
        await connection.close()
