"""Claim tokens tell one claim from every other: unique within a batch and across batches."""

from __future__ import annotations

from listeners.idempotency.redis import DONE
from listeners.idempotency.store import new_token, token_base


def batch(base: str, count: int) -> list[str]:
    """The tokens of a batch of ``count`` claims, as the Redis batch script makes them."""
    return [f"{base}{index:x}" for index in range(count)]


def test_tokens_made_together_are_distinct_and_never_the_done_marker() -> None:
    first, second = batch(token_base(), 300), batch(token_base(), 300)
    assert len(set(first)) == 300
    assert not set(first) & set(second), "another batch (or process) never repeats a token"
    assert DONE not in first + second
    assert new_token() not in first
