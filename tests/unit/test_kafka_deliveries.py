"""Kafka deliveries build their Message only when something reads it."""

from __future__ import annotations

from aiokafka import TopicPartition
from aiokafka.structs import ConsumerRecord

from listeners.kafka.commits import HeldPartition
from listeners.kafka.deliveries import RecordDelivery
from listeners.message import Headers, Message
from listeners.runtime.offsets import PartitionOffsets


def record(offset: int, value: bytes | None) -> ConsumerRecord[bytes, bytes]:
    return ConsumerRecord("t", 0, offset, 0, 0, b"k", value, None, 1, len(value or b""), [])


def test_the_body_is_there_without_a_message_and_the_message_is_built_once_when_read() -> None:
    built: list[int] = []

    def build(rec: ConsumerRecord[bytes, bytes]) -> Message:
        built.append(rec.offset)
        return Message(rec.value or b"", Headers(), rec.topic, "l", "kafka", partition=0, offset=rec.offset)

    partition = HeldPartition(TopicPartition("t", 0), PartitionOffsets(3), committed=3)
    delivery = RecordDelivery(record(3, b"{}"), build, settler=None, partition=partition)  # type: ignore[arg-type]
    assert delivery.body == b"{}"
    assert delivery.handle is partition
    assert built == []
    first = delivery.message
    assert delivery.message is first
    assert built == [3]
    delivery.message = first.next_attempt()
    assert delivery.message.attempt == 2
    assert built == [3], "a replaced message is kept, not built again"


def test_a_record_without_a_value_has_an_empty_body_and_a_prebuilt_message_is_used() -> None:
    prebuilt = Message(b"", Headers(), "t", "l", "kafka", partition=0, offset=9)

    def build(rec: ConsumerRecord[bytes, bytes]) -> Message:
        raise AssertionError("not built again")

    delivery = RecordDelivery(record(9, None), build, None, None, prebuilt)  # type: ignore[arg-type]
    assert delivery.body == b""
    assert delivery.message is prebuilt
