"""Offset bookkeeping of one consumer's partitions, and committing it.

Offsets are committed explicitly as ``{tp: contiguous finished offset}`` (see
:class:`listeners.runtime.offsets.PartitionOffsets`), never the fetch position; at-most-once instead
commits the fetched positions before any record of a poll is handled.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka import errors as kafka_errors
from aiokafka.structs import ConsumerRecord

from listeners.kafka.errors import translate
from listeners.runtime.offsets import PartitionOffsets

log = logging.getLogger("listeners.kafka")


@dataclass(eq=False, slots=True)
class HeldPartition:
    """Offsets handed out from one assigned partition; replaced when the partition is re-read."""

    tp: TopicPartition
    offsets: PartitionOffsets
    committed: int
    active: bool = True


async def commit_finished(
    consumer: AIOKafkaConsumer, partitions: Iterable[HeldPartition], *, listener_id: str, reason: str
) -> bool:
    """Commit what finished on the active ``partitions`` since their last commit; False if the broker
    did not take it (logged: a commit is retried on the next occasion, or the records come again)."""
    due = [state for state in partitions if state.active and state.offsets.committable > state.committed]
    if not due:
        return True
    offsets = {state.tp: state.offsets.committable for state in due}
    try:
        await consumer.commit(offsets)
    except (kafka_errors.CommitFailedError, kafka_errors.IllegalStateError) as error:
        # The group moved on (rebalance or lost membership): these partitions' records will be
        # delivered again from the last commit; the revoke path commits whatever it can first.
        log.warning("listener %s: commit on %s not accepted: %s", listener_id, reason, error)
        return False
    except kafka_errors.KafkaError as error:
        log.warning(
            "listener %s: commit on %s failed, will retry: %s",
            listener_id,
            reason,
            translate(error, "committing"),
        )
        return False
    for state in due:
        state.committed = offsets[state.tp]
    return True


async def commit_fetched(
    consumer: AIOKafkaConsumer, batch: dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]]
) -> None:
    """At-most-once: the fetched positions are committed before any of these records is handled."""
    offsets = {tp: records[-1].offset + 1 for tp, records in batch.items() if records}
    if offsets:
        await consumer.commit(offsets)
