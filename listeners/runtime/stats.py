"""Per-listener counters, shown in the shutdown summary and available to tests and metrics."""

from __future__ import annotations

from dataclasses import dataclass, fields

from listeners.outcome import Ack, DeadLetter, Outcome, Release, Retry


@dataclass(slots=True)
class ListenerStats:
    """What a listener did since it started.

    ``failed`` counts failed attempts (each retry and each dead letter follows one);
    ``store_errors`` the idempotency store calls that failed (each deferral or fail-open handling).
    """

    processed: int = 0
    failed: int = 0
    retried: int = 0
    dead_lettered: int = 0
    duplicates_skipped: int = 0
    discarded: int = 0
    released: int = 0
    store_errors: int = 0

    def record(self, outcome: Outcome) -> None:
        """Count one outcome the listener container acted on."""
        if isinstance(outcome, Ack):
            if outcome.skipped == "duplicate":
                self.duplicates_skipped += 1
            elif outcome.skipped == "discarded":
                self.failed += 1
                self.discarded += 1
            else:
                self.processed += 1
        elif isinstance(outcome, Retry):
            self.failed += 1
            self.retried += 1
        elif isinstance(outcome, DeadLetter):
            self.failed += 1
            self.dead_lettered += 1
        elif isinstance(outcome, Release):
            self.released += 1

    def summary(self) -> str:
        """``processed=3 failed=1 ...`` for log lines."""
        return " ".join(f"{field.name}={getattr(self, field.name)}" for field in fields(self))
