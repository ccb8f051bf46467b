"""ChannelAcks: multiple-acks only over contiguous finished tags, each tag once, nothing after loss."""

from __future__ import annotations

from listeners.rabbit.acks import ChannelAcks


def delivered(*tags: int) -> ChannelAcks:
    acks = ChannelAcks()
    for tag in tags:
        acks.delivered(tag)
    return acks


def test_in_order_finishes_ack_each_tag() -> None:
    acks = delivered(1, 2, 3)
    assert [acks.finished(1), acks.finished(2), acks.finished(3)] == [1, 2, 3]
    assert acks.pending == 0


def test_a_run_is_acked_only_when_its_head_finishes() -> None:
    acks = delivered(1, 2, 3, 4)
    assert acks.finished(3) is None
    assert acks.finished(2) is None
    assert acks.finished(1) == 3, "one multiple-ack covers 1..3"
    assert acks.finished(4) == 4


def test_a_tag_settled_on_its_own_leaves_the_run() -> None:
    acks = delivered(1, 2, 3)
    assert acks.finished(2) is None
    assert acks.finished(3) is None
    assert acks.settled(1) == 3, "1 was nacked: 2..3 may now be acked together"
    assert acks.pending == 0


def test_each_tag_is_settled_once() -> None:
    acks = delivered(1, 2)
    assert acks.finished(1) == 1
    assert acks.finished(1) is None
    assert acks.settled(1) is None
    assert acks.owns(2)
    assert acks.settled(2) is None
    assert not acks.owns(2)
    assert acks.finished(2) is None


def test_nothing_is_acked_after_the_channel_is_lost() -> None:
    acks = delivered(1, 2)
    acks.close()
    assert acks.finished(1) is None
    assert acks.settled(2) is None
    assert not acks.owns(2)


def test_finished_tags_behind_a_stuck_one_are_acked_one_by_one_at_the_limit() -> None:
    acks = ChannelAcks(straggler_limit=2)
    for tag in range(1, 7):
        acks.delivered(tag)
    assert acks.finished(2) is None
    assert acks.stragglers() == [], "one finished tag behind the gap waits for the multiple-ack"
    assert acks.finished(3) is None
    assert acks.stragglers() == [2, 3], "at the limit they are acked on their own, freeing the window"
    assert acks.stragglers() == [], "each once"
    assert not acks.owns(2)
    assert acks.finished(5) is None
    assert acks.finished(1) == 1, "the head's multiple-ack covers only what is still outstanding"
    assert acks.finished(4) == 5, "4 and the finished 5 behind it: one multiple-ack up to 5"
    assert acks.pending == 1
    assert acks.finished(6) == 6
    assert acks.pending == 0


def test_no_stragglers_after_the_channel_is_lost() -> None:
    acks = ChannelAcks(straggler_limit=1)
    for tag in (1, 2):
        acks.delivered(tag)
    assert acks.finished(2) is None
    acks.close()
    assert acks.stragglers() == []
