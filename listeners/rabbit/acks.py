"""Acknowledging RabbitMQ deliveries in contiguous runs, once each, per channel.

``basic.ack(tag, multiple=True)`` settles every delivery of the channel up to ``tag``, so it may only
cover tags that are all finished. :class:`ChannelAcks` tracks the tags of one channel in delivery
order and says, after each finished tag, up to which tag a single multiple-ack is now safe. A tag is
settled once: acking it again, or acking after the channel was lost (the broker has requeued its
deliveries), does nothing; a double ack would make the broker close the channel.

A slow or stuck handler would otherwise hold back the acks of everything delivered after it, and with
them the prefetch window: the broker sends nothing more once every slot is taken by a finished but
unacked delivery. So once ``straggler_limit`` finished tags wait behind an unfinished one, they are
handed out to be acked one by one (:meth:`stragglers`); the multiple-ack that follows once the head
finishes covers only what is still outstanding.
"""

from __future__ import annotations

from collections import deque


class ChannelAcks:
    """Outstanding delivery tags of one channel."""

    __slots__ = ("_done", "_outstanding", "open", "straggler_limit")

    def __init__(self, straggler_limit: int = 1) -> None:
        self._outstanding: deque[int] = deque()
        self._done: set[int] = set()
        self.open = True
        self.straggler_limit = max(1, straggler_limit)

    def delivered(self, tag: int) -> None:
        """A delivery arrived (tags grow by one per delivery on a channel)."""
        self._outstanding.append(tag)

    def finished(self, tag: int) -> int | None:
        """``tag``'s handler succeeded; returns the tag to ack with ``multiple=True``, if any is due."""
        if not self.open or tag in self._done or not self._outstanding or tag < self._outstanding[0]:
            return None
        self._done.add(tag)
        return self._advance()

    def settled(self, tag: int) -> int | None:
        """``tag`` was settled on its own (nack/reject): it leaves the run; returns a now-due ack tag."""
        if not self.open or tag in self._done:
            return None
        try:
            self._outstanding.remove(tag)
        except ValueError:
            return None
        return self._advance()

    def stragglers(self) -> list[int]:
        """Finished tags behind an unfinished one, once there are ``straggler_limit`` of them, to ack
        one by one (``multiple=False``); they leave the run. Empty otherwise."""
        done = self._done
        if len(done) < self.straggler_limit or not self.open:
            return []
        tags = sorted(done)
        done.clear()
        self._outstanding = deque(tag for tag in self._outstanding if tag not in tags)
        return tags

    def owns(self, tag: int) -> bool:
        """Whether ``tag`` is outstanding and not yet finished (so it may be settled on its own)."""
        return self.open and tag not in self._done and tag in self._outstanding

    def close(self) -> None:
        """The channel is gone: its deliveries are the broker's again; nothing may be acked any more."""
        self.open = False
        self._outstanding.clear()
        self._done.clear()

    @property
    def pending(self) -> int:
        return len(self._outstanding)

    def _advance(self) -> int | None:
        highest = None
        while self._outstanding and self._outstanding[0] in self._done:
            highest = self._outstanding.popleft()
            self._done.discard(highest)
        return highest
