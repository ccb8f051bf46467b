"""The embedded broker: a real transport behind the same protocol as Kafka and RabbitMQ."""

from listeners.memory.broker import MemoryBroker
from listeners.memory.kafka import MemoryKafkaTransport
from listeners.memory.rabbit import MemoryRabbitTransport

__all__ = ["MemoryBroker", "MemoryKafkaTransport", "MemoryRabbitTransport"]
