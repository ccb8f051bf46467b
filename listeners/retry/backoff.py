"""Back-off policy (immutable, from config) and its per-message execution (a sequence of delays)."""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass, field

from listeners.spec import Backoff


@dataclass(frozen=True, slots=True)
class BackOffPolicy:
    """Exponential back-off with a cap and proportional jitter; ``multiplier=1`` gives a fixed delay.

    ``delay(n)`` is the wait after the n-th failed attempt. Jitter spreads delays by up to
    ``+/- jitter * delay`` so that many failing consumers do not retry in lock-step; it never
    exceeds ``max_delay``.
    """

    initial: float
    multiplier: float = 1.0
    maximum: float = float("inf")
    jitter: float = 0.0
    rng: random.Random = field(default_factory=random.Random, compare=False, repr=False)

    @classmethod
    def from_spec(cls, spec: Backoff) -> BackOffPolicy:
        return cls(initial=spec.delay, multiplier=spec.multiplier, maximum=spec.max_delay, jitter=spec.jitter)

    def base_delay(self, failed_attempts: int) -> float:
        """The delay after ``failed_attempts`` (>= 1) failures before jitter: what names a delay tier."""
        exponent = max(0, failed_attempts - 1)
        try:
            grown = self.initial * self.multiplier**exponent
        except OverflowError:  # after ~1000 doublings; the cap applies long before
            grown = self.maximum
        return min(self.maximum, grown)

    def delay(self, failed_attempts: int) -> float:
        """Seconds to wait after ``failed_attempts`` (>= 1) failures."""
        base = self.base_delay(failed_attempts)
        if self.jitter and base > 0:
            base *= 1.0 + self.jitter * (2.0 * self.rng.random() - 1.0)
        return max(0.0, min(self.maximum, base))

    def execution(self) -> Iterator[float]:
        """An endless sequence of delays for one operation that keeps failing."""
        failed = 0
        while True:
            failed += 1
            yield self.delay(failed)
