"""Kafka's default partitioner: murmur2 matches Kafka's published vectors and aiokafka's partitioner."""

from __future__ import annotations

import random

import pytest
from aiokafka.partitioner import DefaultPartitioner
from aiokafka.partitioner import murmur2 as aiokafka_murmur2

from listeners.memory.partitioner import murmur2, partition_for_key

# org.apache.kafka.common.utils.UtilsTest#testMurmur2
KAFKA_VECTORS = [
    (b"21", -973932308),
    (b"foobar", -790332482),
    (b"a-little-bit-long-string", -985981536),
    (b"a-little-bit-longer-string", -1486304829),
    (b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58897971),
    (b"abc", 479470107),
]


def random_keys(count: int, seed: int) -> list[bytes]:
    rng = random.Random(seed)
    return [rng.randbytes(rng.randrange(0, 64)) for _ in range(count)]


@pytest.mark.parametrize(("data", "expected"), KAFKA_VECTORS)
def test_murmur2_matches_kafkas_published_vectors(data: bytes, expected: int) -> None:
    assert murmur2(data) == expected


def test_murmur2_returns_a_signed_32_bit_int() -> None:
    for key in random_keys(500, seed=1):
        assert -(2**31) <= murmur2(key) < 2**31


@pytest.mark.parametrize("length", range(9))
def test_murmur2_agrees_with_aiokafka_for_every_tail_length(length: int) -> None:
    # Lengths 0-8 cover every remainder mod 4 with and without whole 4-byte blocks.
    rng = random.Random(length)
    for _ in range(50):
        data = rng.randbytes(length)
        assert murmur2(data) & 0xFFFFFFFF == aiokafka_murmur2(data)


def test_murmur2_agrees_with_aiokafka_for_random_keys() -> None:
    for key in random_keys(2000, seed=7):
        assert murmur2(key) & 0xFFFFFFFF == aiokafka_murmur2(key), key


def test_murmur2_handles_high_bytes() -> None:
    data = bytes(range(256))

    assert murmur2(data) & 0xFFFFFFFF == aiokafka_murmur2(data)


@pytest.mark.parametrize("partitions", [1, 2, 3, 6, 12, 100])
def test_partition_for_key_agrees_with_aiokafkas_default_partitioner(partitions: int) -> None:
    all_partitions = list(range(partitions))
    partitioner = DefaultPartitioner()

    for key in random_keys(1000, seed=partitions):
        expected = partitioner(key, all_partitions, all_partitions)
        assert partition_for_key(key, partitions) == expected, key


def test_partition_for_key_of_kafka_vectors_uses_the_positive_hash() -> None:
    # Kafka: toPositive(murmur2(key)) % numPartitions, toPositive masking the sign bit.
    for data, hashed in KAFKA_VECTORS:
        assert partition_for_key(data, 7) == (hashed & 0x7FFFFFFF) % 7


def test_partition_for_key_is_stable_and_in_range() -> None:
    for key in random_keys(500, seed=3):
        partition = partition_for_key(key, 5)
        assert 0 <= partition < 5
        assert partition_for_key(key, 5) == partition


def test_keys_spread_over_all_partitions() -> None:
    used = {partition_for_key(f"key-{n}".encode(), 8) for n in range(200)}

    assert used == set(range(8))
