"""Non-blocking retries: through the broker's delay tiers (Kafka retry topics, RabbitMQ TTL queues),
on real time with short delays, since a broker's delay cannot run on a test's clock."""

from __future__ import annotations

import time

from listeners import Message, Retry
from tests.contract.configs import TransportConfig, unique
from tests.contract.suites.retry import Flaky, Payment

DELAY = 0.3


def non_blocking(attempts: int, **options: object) -> Retry:
    backoff = {"delay": DELAY, "multiplier": 1.0, "jitter": 0.0}
    return Retry.model_validate({"attempts": attempts, "mode": "non-blocking", "backoff": backoff, **options})


class NonBlockingRetrySuite(TransportConfig):
    async def test_transient_failure_is_retried_through_the_broker_never_early(self) -> None:
        source = unique("nb-flaky")

        class Handlers:
            attempts: list[tuple[int, float]] = []

            @self.listener(source, id="nb-flaky", retry=non_blocking(3))
            async def handle(self, payment: Payment, message: Message) -> None:
                self.attempts.append((message.attempt, time.monotonic()))
                if message.attempt == 1:
                    raise Flaky("first try fails")

        handlers = Handlers()
        async with self.run(handlers) as app:
            await self.publish(app, source, Payment(payment_id="nb-1"))
            await app.wait_for(lambda: app.stats("nb-flaky").processed == 1, timeout=30)
            stats = app.stats("nb-flaky")
            assert (stats.failed, stats.retried, stats.dead_lettered) == (1, 1, 0)
            assert await self.dead_letters(app, source) == []
        [(first, failed_at), (second, retried_at)] = handlers.attempts
        assert (first, second) == (1, 2)
        assert retried_at - failed_at >= DELAY, "a retry ran before its delay was over"

    async def test_exhausted_non_blocking_retries_dead_letter_the_original(self) -> None:
        source = unique("nb-exhaust")

        class Handlers:
            attempts: list[int] = []
            seen: list[Message] = []

            @self.listener(source, id="nb-exhaust", retry=non_blocking(3))
            async def handle(self, payment: Payment, message: Message) -> None:
                self.attempts.append(message.attempt)
                self.seen.append(message)
                raise Flaky(f"failure {message.attempt}")

        async with self.run(Handlers()) as app:
            await self.publish(
                app, source, Payment(payment_id="nb-2"), key="key-2", headers={"x-origin": "t"}
            )
            [dead] = await self.wait_dead_letters(app, source, 1, timeout=30)
            stats = app.stats("nb-exhaust")
            assert (stats.failed, stats.retried, stats.dead_lettered) == (3, 2, 1)
        assert Handlers.attempts == [1, 2, 3]
        assert Payment.model_validate_json(dead.body) == Payment(payment_id="nb-2")
        assert dead.headers["x-origin"] == b"t"
        if self.has_keys:
            assert dead.key == b"key-2"
        if self.kind == "kafka":  # RabbitMQ keeps header tables sorted by name
            assert dead.headers.pairs[0] == ("x-origin", b"t"), "original headers first, byte for byte"
        self.check_dead_letter_headers(dead, source, Flaky, "failure 3", first=Handlers.seen[0], attempts=3)

    async def test_the_retry_timeout_counts_from_the_first_failure_across_the_broker(self) -> None:
        source = unique("nb-timeout")

        class Handlers:
            attempts: list[int] = []

            # The second attempt runs no earlier than DELAY after the first failure, so a third one
            # would start past 1.5 * DELAY: only the first failure's time, carried through the retry
            # tier in a header, lets the second failure see that.
            @self.listener(source, id="nb-timeout", retry=non_blocking(5, timeout=1.5 * DELAY))
            async def handle(self, payment: Payment, message: Message) -> None:
                self.attempts.append(message.attempt)
                raise Flaky(f"failure {message.attempt}")

        async with self.run(Handlers()) as app:
            await self.publish(app, source, Payment(payment_id="nb-t"))
            [dead] = await self.wait_dead_letters(app, source, 1, timeout=30)
            stats = app.stats("nb-timeout")
            assert (stats.failed, stats.retried, stats.dead_lettered) == (2, 1, 1)
        assert Handlers.attempts == [1, 2]
        self.check_dead_letter_headers(dead, source, Flaky, "failure 2")

    async def test_a_refused_retry_publish_leaves_the_source_unsettled_and_loses_nothing(self) -> None:
        source = unique("nb-refused")

        class Handlers:
            attempts: list[int] = []

            @self.listener(source, id="nb-refused", retry=non_blocking(2))
            async def handle(self, payment: Payment, message: Message) -> None:
                self.attempts.append(message.attempt)
                if message.attempt == 1:
                    raise Flaky("first try fails")

        async with self.run(Handlers()) as app:
            with self.refusing_publishes(app, except_to=source) as refused:
                await self.publish(app, source, Payment(payment_id="nb-r"))
                await app.wait_for(lambda: len(refused) >= 2, timeout=10)  # tried again after a back-off
                assert app.stats("nb-refused").retried == 0
        assert Handlers.attempts == [1]
        # The source was never settled: the next app gets it again, and its retry goes through.
        async with self.run(Handlers()) as app:
            await app.wait_for(lambda: app.stats("nb-refused").processed == 1, timeout=30)
        assert Handlers.attempts == [1, 1, 2]

    async def test_not_retryable_failure_skips_the_retry_tiers(self) -> None:
        source = unique("nb-fatal")

        class Handlers:
            calls = 0

            @self.listener(source, id="nb-fatal", retry=non_blocking(5, not_retryable=(ValueError,)))
            async def handle(self, payment: Payment) -> None:
                type(self).calls += 1
                raise ValueError("bad amount")

        async with self.run(Handlers()) as app:
            await self.publish(app, source, Payment(payment_id="nb-3"))
            [dead] = await self.wait_dead_letters(app, source, 1, timeout=30)
            assert app.stats("nb-fatal").retried == 0
        assert Handlers.calls == 1
        self.check_dead_letter_headers(dead, source, ValueError, "bad amount")
