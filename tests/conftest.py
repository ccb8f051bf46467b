"""Fixtures shared by the whole run: real brokers, started once, failing loudly when unavailable."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.brokers import KafkaBroker, kafka_broker


@pytest.fixture(scope="session")
def kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaBroker]:
    """The Kafka-protocol broker of this test run (Tansu, or LISTENERS_TEST_KAFKA)."""
    with kafka_broker(tmp_path_factory.mktemp("kafka")) as broker:
        yield broker
