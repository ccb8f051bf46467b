"""The contract suites on the RabbitMQ transport, against the local RabbitMQ."""

from __future__ import annotations

import pytest

from tests.contract.configs import RabbitMQConfig
from tests.contract.suites.consume import ConsumeSuite
from tests.contract.suites.idempotency import IdempotencySuite
from tests.contract.suites.nonblocking import NonBlockingRetrySuite
from tests.contract.suites.ordering import OrderingSuite
from tests.contract.suites.replay import ReplaySuite
from tests.contract.suites.retry import RetrySuite
from tests.contract.suites.stop import StopSuite

pytestmark = pytest.mark.rabbit


class TestRabbitConsume(RabbitMQConfig, ConsumeSuite):
    pass


class TestRabbitRetry(RabbitMQConfig, RetrySuite):
    pass


class TestRabbitOrdering(RabbitMQConfig, OrderingSuite):
    pass


class TestRabbitStop(RabbitMQConfig, StopSuite):
    pass


class TestRabbitNonBlockingRetry(RabbitMQConfig, NonBlockingRetrySuite):
    pass


class TestRabbitReplay(RabbitMQConfig, ReplaySuite):
    pass


class TestRabbitIdempotency(RabbitMQConfig, IdempotencySuite):
    pass
