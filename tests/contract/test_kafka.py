"""The contract suites on the Kafka transport, against the run's Kafka-protocol broker."""

from __future__ import annotations

import pytest

from tests.contract.configs import KafkaConfig
from tests.contract.suites.batch import BatchSuite
from tests.contract.suites.consume import ConsumeSuite
from tests.contract.suites.idempotency import IdempotencySuite
from tests.contract.suites.nonblocking import NonBlockingRetrySuite
from tests.contract.suites.ordering import OrderingSuite
from tests.contract.suites.replay import ReplaySuite
from tests.contract.suites.retry import RetrySuite
from tests.contract.suites.stop import StopSuite

pytestmark = pytest.mark.kafka


class TestKafkaConsume(KafkaConfig, ConsumeSuite):
    pass


class TestKafkaRetry(KafkaConfig, RetrySuite):
    pass


class TestKafkaOrdering(KafkaConfig, OrderingSuite):
    pass


class TestKafkaStop(KafkaConfig, StopSuite):
    pass


class TestKafkaBatch(KafkaConfig, BatchSuite):
    pass


class TestKafkaNonBlockingRetry(KafkaConfig, NonBlockingRetrySuite):
    pass


class TestKafkaReplay(KafkaConfig, ReplaySuite):
    pass


class TestKafkaIdempotency(KafkaConfig, IdempotencySuite):
    pass
