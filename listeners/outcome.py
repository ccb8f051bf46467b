"""What became of one message: the value every pipeline step returns.

Interceptors and the invoker return an :data:`Outcome`; the listener container then either acts on
it itself (``Retry`` in blocking mode and ``Defer`` wait and run the message again, in place) or asks
the transport to settle the delivery (ack/commit, publish to a retry or dead-letter destination and
then ack, or release it uncommitted).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True, slots=True)
class Ack:
    """Done: acknowledge / mark the offset complete.

    ``skipped`` says why the handler did not run or did not count as processed: ``duplicate``
    (idempotency), ``discarded`` (failed with dead letters disabled). ``after``: acknowledge only once
    this future is done (an idempotency key being marked done); the ordering lane goes on meanwhile.
    """

    skipped: Literal["duplicate", "discarded"] | None = None
    error: BaseException | None = None
    after: asyncio.Future[None] | None = None


@dataclass(frozen=True, slots=True)
class Retry:
    """Run the message again after ``delay`` seconds as attempt ``next_attempt``.

    ``blocking`` retries in place (the ordering lane waits); otherwise the transport republishes the
    message to a retry destination and acknowledges the original. ``tier`` is the back-off delay before
    jitter, which names the delay tier a non-blocking retry waits in; None when a handler asked for
    its own delay (:class:`~listeners.exceptions.RetryLater`).
    """

    delay: float
    next_attempt: int
    error: BaseException
    blocking: bool = True
    tier: float | None = None


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """Publish the original message to the dead-letter destination, then acknowledge it."""

    error: BaseException


@dataclass(frozen=True, slots=True)
class Defer:
    """Run the message again after ``delay`` seconds without counting an attempt (e.g. key in progress)."""

    delay: float
    reason: str


@dataclass(frozen=True, slots=True)
class Release:
    """Give the message back uncommitted / unacknowledged so the broker delivers it again."""

    reason: str


Outcome = Ack | Retry | DeadLetter | Defer | Release

ACK = Ack()
"""The common outcome, shared to avoid an allocation per message."""
