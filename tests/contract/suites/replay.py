"""Replaying dead letters (through the core API): the replayed message runs again as a first attempt."""

from __future__ import annotations

from typing import Any

from listeners import Message, Retry
from listeners.deadletter.replay import replay_dead_letters
from listeners.deadletter.store import DeadLetterStore
from listeners.deadletter.summary import DeadLetterFilter, list_dead_letters
from listeners.testing import TestApp
from listeners.transport.registry import dead_letter_store
from tests.contract.configs import TransportConfig, unique
from tests.contract.suites.nonblocking import non_blocking
from tests.contract.suites.retry import Flaky, Payment

REPLAY_COUNT = "listeners-replay-count"


class ReplaySuite(TransportConfig):
    def dead_letter_destination(self, source: str) -> str:
        return f"{source}-dlt" if self.kind == "kafka" else f"{source}.dlq"

    async def store(self, app: TestApp) -> DeadLetterStore:
        return dead_letter_store(await app.container.transports().started(self.kind))

    async def round_trip(self, listener_id: str, retry: Retry) -> tuple[list[tuple[int, bytes | None]], Any]:
        """Publish one payment whose handler fails until it is replayed; replay its dead letter."""
        source = unique("replay")

        class Handlers:
            seen: list[tuple[int, bytes | None]] = []

            @self.listener(source, id=listener_id, retry=retry)
            async def handle(self, payment: Payment, message: Message) -> None:
                replayed = message.headers.get(REPLAY_COUNT)
                self.seen.append((message.attempt, replayed))
                if replayed is None:
                    raise Flaky(f"attempt {message.attempt} fails")

        async with self.run(Handlers()) as app:
            await self.publish(app, source, Payment(payment_id="r-1"), key="key-r", headers={"x-origin": "t"})
            await app.wait_for(lambda: app.stats(listener_id).dead_lettered == 1, timeout=30)
            store = await self.store(app)
            destination = self.dead_letter_destination(source)
            before = await list_dead_letters(store, destination)
            assert [summary.exception_name for summary in before.shown] == ["Flaky"]

            report = await replay_dead_letters(store, destination, matching=DeadLetterFilter("Flaky"))

            assert (report.replayed, report.unmatched, source in report.targets[0]) == (1, 0, True)
            await app.wait_for(lambda: app.stats(listener_id).processed == 1, timeout=30)
            after = await list_dead_letters(store, destination)
            assert len(after.shown) == (0 if store.removes_replayed else 1)
            assert app.stats(listener_id).dead_lettered == 1
        return Handlers.seen, before.shown[0]

    async def test_a_replayed_dead_letter_runs_again_as_a_first_attempt(self) -> None:
        seen, dead = await self.round_trip("replay-once", Retry(attempts=1))

        assert seen == [(1, None), (1, b"1")]
        if self.has_keys:
            assert dead.key == b"key-r"

    async def test_a_replay_after_non_blocking_retries_gets_a_fresh_retry_budget(self) -> None:
        seen, dead = await self.round_trip("replay-budget", non_blocking(2))

        assert dead.retry_count == 2
        assert seen == [(1, None), (2, None), (1, b"1")]
