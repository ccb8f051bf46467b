"""Contiguous completed offsets: what may be committed for one partition."""

from __future__ import annotations

import pytest

from listeners.runtime.offsets import PartitionOffsets


def started(position: int, *offsets: int) -> PartitionOffsets:
    tracker = PartitionOffsets(position)
    for offset in offsets:
        tracker.start(offset)
    return tracker


def test_a_new_tracker_can_commit_its_starting_position() -> None:
    tracker = PartitionOffsets(42)

    assert tracker.committable == 42
    assert tracker.in_flight == 0


def test_starting_an_offset_does_not_make_it_committable() -> None:
    tracker = started(10, 10)

    assert tracker.committable == 10
    assert tracker.in_flight == 1


def test_in_order_completion_moves_the_position_one_past_each_finished_offset() -> None:
    tracker = started(0, 0, 1, 2)

    assert tracker.finish(0) is True
    assert tracker.committable == 1
    assert tracker.finish(1) is True
    assert tracker.committable == 2
    assert tracker.finish(2) is True
    assert tracker.committable == 3
    assert tracker.in_flight == 0


def test_out_of_order_completion_commits_only_the_contiguous_prefix() -> None:
    tracker = started(10, 10, 11, 12, 13)

    assert tracker.finish(12) is False
    assert tracker.finish(11) is False
    assert tracker.committable == 10
    assert tracker.in_flight == 4

    assert tracker.finish(10) is True
    assert tracker.committable == 13
    assert tracker.in_flight == 1

    assert tracker.finish(13) is True
    assert tracker.committable == 14
    assert tracker.in_flight == 0


def test_a_slow_record_holds_back_the_commit_for_everything_after_it() -> None:
    tracker = started(0, *range(100))

    for offset in range(1, 100):
        assert tracker.finish(offset) is False
    assert tracker.committable == 0

    assert tracker.finish(0) is True
    assert tracker.committable == 100


def test_gaps_in_started_offsets_need_no_completion_of_their_own() -> None:
    # Compaction / control records: offsets 11-14 and 16-19 are never handed out.
    tracker = started(10, 10, 15, 20)

    tracker.finish(10)
    assert tracker.committable == 11
    tracker.finish(15)
    assert tracker.committable == 16
    tracker.finish(20)
    assert tracker.committable == 21


def test_gap_completed_out_of_order_commits_past_the_last_started_offset() -> None:
    tracker = started(10, 10, 15, 20)

    assert tracker.finish(20) is False
    assert tracker.finish(15) is False
    assert tracker.finish(10) is True
    assert tracker.committable == 21


def test_a_first_record_after_a_gap_with_nothing_in_flight_moves_the_position_to_it() -> None:
    tracker = PartitionOffsets(5)

    tracker.start(9)

    # Offsets 5-8 do not exist; committing 9 re-reads nothing that was skipped and loses nothing.
    assert tracker.committable == 9
    tracker.finish(9)
    assert tracker.committable == 10


def test_a_gap_after_everything_finished_moves_the_position_when_the_next_record_starts() -> None:
    tracker = started(0, 0)
    tracker.finish(0)

    tracker.start(7)

    assert tracker.committable == 7
    assert tracker.in_flight == 1


def test_a_gap_does_not_skip_past_records_still_in_flight() -> None:
    tracker = started(0, 0, 7)

    assert tracker.committable == 0
    tracker.finish(7)
    assert tracker.committable == 0


def test_starting_an_offset_below_the_position_raises_and_keeps_it() -> None:
    tracker = PartitionOffsets(10)

    with pytest.raises(ValueError, match="offset 3 is before the committable position 10"):
        tracker.start(3)

    assert tracker.committable == 10


@pytest.mark.parametrize("offset", [12, 11])
def test_starting_out_of_order_raises(offset: int) -> None:
    tracker = started(10, 10, 12)

    with pytest.raises(ValueError, match=rf"offset {offset} started out of order after 12"):
        tracker.start(offset)

    # The failed start changed nothing.
    assert tracker.in_flight == 2
    tracker.finish(10)
    tracker.finish(12)
    assert tracker.committable == 13


def test_in_flight_counts_started_offsets_that_are_not_committable() -> None:
    tracker = started(0, 0, 1, 2, 3)

    tracker.finish(3)
    tracker.finish(1)
    assert tracker.in_flight == 4  # finished but held back by 0 still count

    tracker.finish(0)
    assert tracker.in_flight == 2  # 2, and the finished 3 held back behind it

    tracker.finish(2)
    assert tracker.in_flight == 0


def test_finishing_the_same_offset_twice_changes_nothing_the_second_time() -> None:
    tracker = started(0, 0, 1)

    assert tracker.finish(0) is True
    assert tracker.finish(0) is False
    assert tracker.committable == 1
    assert tracker.in_flight == 1

    assert tracker.finish(1) is True
    assert tracker.committable == 2


def test_finishing_an_out_of_order_offset_twice_still_waits_for_the_gap() -> None:
    tracker = started(0, 0, 1, 2)

    assert tracker.finish(1) is False
    assert tracker.finish(1) is False
    assert tracker.committable == 0
    assert tracker.finish(0) is True
    assert tracker.committable == 2


def test_a_run_started_at_once_commits_like_offsets_started_one_by_one() -> None:
    tracker = PartitionOffsets(10)
    tracker.start_run([12, 13, 15])  # a gap before and inside the run (compaction)

    assert tracker.committable == 12
    assert tracker.in_flight == 3
    tracker.finish(13)
    assert tracker.committable == 12, "13 waits for 12"
    tracker.finish(12)
    assert tracker.committable == 14
    tracker.finish(15)
    assert tracker.committable == 16


def test_a_run_must_follow_what_was_started_and_keep_its_order() -> None:
    tracker = started(0, 0, 1)

    with pytest.raises(ValueError, match="offset 1 started out of order after 1"):
        tracker.start_run([1, 2])
    with pytest.raises(ValueError, match=r"offsets 5\.\.3 started out of order"):
        tracker.start_run([5, 4, 3])
    assert tracker.in_flight == 2, "a refused run starts nothing"
    tracker.start_run([])
    assert tracker.in_flight == 2
