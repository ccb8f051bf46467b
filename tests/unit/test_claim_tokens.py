"""Claim tokens tell one claim from every other: unique within a batch and across batches."""

from __future__ import annotations

from listeners.idempotency.redis import DONE
from listeners.idempotency.store import new_token, new_tokens


def test_tokens_made_together_are_distinct_and_never_the_done_marker() -> None:
    first, second = new_tokens(300), new_tokens(300)
    assert len(set(first)) == 300
    assert not set(first) & set(second), "another batch (or process) never repeats a token"
    assert DONE not in first + second
    assert new_token() not in first
    assert new_tokens(0) == []
