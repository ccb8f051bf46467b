"""Back-off policy: fixed and exponential delays, the cap, jitter bounds, per-operation execution."""

from __future__ import annotations

import dataclasses
import random
from itertools import islice

import pytest

from listeners.retry.backoff import BackOffPolicy
from listeners.spec import Backoff


def test_multiplier_one_gives_a_fixed_delay() -> None:
    policy = BackOffPolicy(initial=2.0)

    assert [policy.delay(n) for n in range(1, 8)] == [2.0] * 7


def test_delays_grow_exponentially_from_the_initial_delay() -> None:
    policy = BackOffPolicy(initial=0.5, multiplier=3.0)

    assert [policy.delay(n) for n in range(1, 6)] == [0.5, 1.5, 4.5, 13.5, 40.5]


def test_delays_are_capped_at_the_maximum() -> None:
    policy = BackOffPolicy(initial=1.0, multiplier=2.0, maximum=10.0)

    assert [policy.delay(n) for n in range(1, 8)] == [1.0, 2.0, 4.0, 8.0, 10.0, 10.0, 10.0]


def test_an_initial_delay_above_the_maximum_is_capped() -> None:
    assert BackOffPolicy(initial=60.0, maximum=5.0).delay(1) == 5.0


def test_zero_or_fewer_failed_attempts_wait_like_the_first() -> None:
    policy = BackOffPolicy(initial=1.0, multiplier=2.0)

    assert policy.delay(0) == policy.delay(1) == 1.0


def test_zero_delay_stays_zero_even_with_jitter() -> None:
    policy = BackOffPolicy(initial=0.0, multiplier=2.0, jitter=0.5, rng=random.Random(1))

    assert [policy.delay(n) for n in range(1, 20)] == [0.0] * 19


def test_jitter_stays_within_plus_minus_the_jitter_fraction() -> None:
    policy = BackOffPolicy(initial=10.0, jitter=0.2, rng=random.Random(42))

    samples = [policy.delay(1) for _ in range(2000)]

    assert all(8.0 <= sample <= 12.0 for sample in samples)
    # The spread actually uses most of the band on both sides, so consumers do not retry in lock-step.
    assert min(samples) < 8.2
    assert max(samples) > 11.8
    assert len(set(samples)) > 1900


def test_jitter_applies_around_the_exponential_delay() -> None:
    policy = BackOffPolicy(initial=1.0, multiplier=2.0, jitter=0.1, rng=random.Random(7))

    for failed in range(1, 6):
        base = 2.0 ** (failed - 1)
        samples = [policy.delay(failed) for _ in range(500)]
        assert all(base * 0.9 <= sample <= base * 1.1 for sample in samples)


def test_jitter_never_exceeds_the_maximum() -> None:
    policy = BackOffPolicy(initial=1.0, multiplier=2.0, maximum=5.0, jitter=0.5, rng=random.Random(3))

    samples = [policy.delay(10) for _ in range(2000)]

    assert max(samples) <= 5.0
    assert min(samples) >= 2.5
    # Only downward jitter is possible at the cap, and it is used.
    assert min(samples) < 3.0


def test_full_jitter_never_goes_negative() -> None:
    policy = BackOffPolicy(initial=1.0, jitter=1.0, rng=random.Random(11))

    samples = [policy.delay(1) for _ in range(2000)]

    assert all(0.0 <= sample <= 2.0 for sample in samples)
    assert min(samples) < 0.05


def test_the_same_seed_gives_the_same_jittered_delays() -> None:
    first = BackOffPolicy(initial=1.0, multiplier=2.0, jitter=0.3, rng=random.Random(99))
    second = BackOffPolicy(initial=1.0, multiplier=2.0, jitter=0.3, rng=random.Random(99))

    assert [first.delay(n) for n in range(1, 10)] == [second.delay(n) for n in range(1, 10)]


def test_execution_yields_the_delay_after_each_successive_failure() -> None:
    policy = BackOffPolicy(initial=1.0, multiplier=2.0, maximum=6.0)

    assert list(islice(policy.execution(), 6)) == [1.0, 2.0, 4.0, 6.0, 6.0, 6.0]


def test_each_execution_starts_again_from_the_initial_delay() -> None:
    policy = BackOffPolicy(initial=1.0, multiplier=3.0)
    first = policy.execution()
    next(first)
    next(first)

    second = policy.execution()

    assert next(second) == 1.0
    assert next(first) == 9.0


def test_execution_stays_at_the_maximum_after_very_many_failures() -> None:
    policy = BackOffPolicy(initial=0.5, multiplier=2.0, maximum=30.0)

    delays = list(islice(policy.execution(), 2000))

    assert delays[-1] == 30.0


def test_policy_is_immutable() -> None:
    policy = BackOffPolicy(initial=1.0)

    with pytest.raises(dataclasses.FrozenInstanceError):
        policy.initial = 2.0  # type: ignore[misc]


def test_from_spec_takes_every_field_of_the_declared_backoff() -> None:
    spec = Backoff(delay="250ms", multiplier=3, max_delay="1m", jitter=0.25)

    policy = BackOffPolicy.from_spec(spec)

    assert (policy.initial, policy.multiplier, policy.maximum, policy.jitter) == (0.25, 3.0, 60.0, 0.25)


def test_from_spec_without_jitter_follows_the_spec_formula() -> None:
    # Backoff documents: delay * multiplier ** (attempt - 1), capped at max_delay.
    policy = BackOffPolicy.from_spec(Backoff(delay=1.0, multiplier=2.0, max_delay=5.0, jitter=0.0))

    assert [policy.delay(n) for n in range(1, 6)] == [1.0, 2.0, 4.0, 5.0, 5.0]


def test_from_spec_defaults_give_jittered_exponential_delays() -> None:
    policy = BackOffPolicy.from_spec(Backoff())
    spec = Backoff()

    for failed in range(1, 10):
        base = min(spec.max_delay, spec.delay * spec.multiplier ** (failed - 1))
        assert (
            base * (1 - spec.jitter) <= policy.delay(failed) <= min(spec.max_delay, base * (1 + spec.jitter))
        )
