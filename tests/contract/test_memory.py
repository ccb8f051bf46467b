"""The contract suites on the embedded broker, through its Kafka face and its RabbitMQ face."""

from __future__ import annotations

from tests.contract.configs import MemoryKafkaConfig, MemoryRabbitConfig
from tests.contract.suites.batch import BatchSuite
from tests.contract.suites.consume import ConsumeSuite
from tests.contract.suites.idempotency import IdempotencySuite
from tests.contract.suites.nonblocking import NonBlockingRetrySuite
from tests.contract.suites.ordering import OrderingSuite
from tests.contract.suites.replay import ReplaySuite
from tests.contract.suites.retry import RetrySuite
from tests.contract.suites.stop import StopSuite


class TestMemoryKafkaConsume(MemoryKafkaConfig, ConsumeSuite):
    pass


class TestMemoryKafkaRetry(MemoryKafkaConfig, RetrySuite):
    pass


class TestMemoryKafkaOrdering(MemoryKafkaConfig, OrderingSuite):
    pass


class TestMemoryKafkaStop(MemoryKafkaConfig, StopSuite):
    pass


class TestMemoryKafkaBatch(MemoryKafkaConfig, BatchSuite):
    pass


class TestMemoryRabbitConsume(MemoryRabbitConfig, ConsumeSuite):
    pass


class TestMemoryRabbitRetry(MemoryRabbitConfig, RetrySuite):
    pass


class TestMemoryRabbitOrdering(MemoryRabbitConfig, OrderingSuite):
    pass


class TestMemoryRabbitStop(MemoryRabbitConfig, StopSuite):
    pass


class TestMemoryRabbitNonBlockingRetry(MemoryRabbitConfig, NonBlockingRetrySuite):
    pass


class TestMemoryKafkaNonBlockingRetry(MemoryKafkaConfig, NonBlockingRetrySuite):
    pass


class TestMemoryKafkaReplay(MemoryKafkaConfig, ReplaySuite):
    pass


class TestMemoryRabbitReplay(MemoryRabbitConfig, ReplaySuite):
    pass


class TestMemoryKafkaIdempotency(MemoryKafkaConfig, IdempotencySuite):
    pass


class TestMemoryRabbitIdempotency(MemoryRabbitConfig, IdempotencySuite):
    pass
