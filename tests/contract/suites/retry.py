"""Failures: retries on the clock, exhaustion and fatal errors to the dead letter, control exceptions."""

from __future__ import annotations

from pydantic import BaseModel

from listeners import ManualClock, Message, MessageDecodeError, RejectMessage, Retry, RetryLater
from tests.contract.configs import TransportConfig, unique

NO_JITTER = {"delay": 1.0, "multiplier": 2.0, "jitter": 0.0}


class Payment(BaseModel):
    payment_id: str


class Flaky(Exception):
    pass


class RetrySuite(TransportConfig):
    async def test_transient_failure_is_retried_after_the_backoff_and_never_early(self) -> None:
        source = unique("flaky")
        clock = ManualClock()

        class Handlers:
            attempts: list[int] = []

            @self.listener(source, id="flaky", retry=Retry(attempts=3, backoff=NO_JITTER))
            async def handle(self, payment: Payment, message: Message) -> None:
                self.attempts.append(message.attempt)
                if message.attempt == 1:
                    raise Flaky("first try fails")

        handlers = Handlers()
        async with self.run(handlers, clock=clock) as app:
            await self.publish(app, source, Payment(payment_id="p-1"))
            await app.wait_for(lambda: handlers.attempts == [1] and clock.pending == 1)
            await clock.advance(0.999)
            assert handlers.attempts == [1], "retried before its back-off was over"
            await clock.advance(0.001)
            await app.wait_for(lambda: app.stats("flaky").processed == 1)
            assert app.stats("flaky").retried == 1
            assert await self.dead_letters(app, source) == []
        assert handlers.attempts == [1, 2]

    async def test_exhausted_retries_dead_letter_the_original_with_diagnostics(self) -> None:
        source = unique("exhaust")
        clock = ManualClock()

        class Handlers:
            calls = 0
            seen: list[Message] = []

            @self.listener(source, id="exhaust", retry=Retry(attempts=3, backoff=NO_JITTER))
            async def handle(self, payment: Payment, message: Message) -> None:
                type(self).calls += 1
                self.seen.append(message)
                raise Flaky(f"failure {self.calls}")

        async with self.run(Handlers(), clock=clock) as app:
            await self.publish(
                app, source, Payment(payment_id="p-2"), key="key-2", headers={"x-origin": "test"}
            )
            for expected_calls, delay in ((1, 1.0), (2, 2.0)):
                await app.wait_for(lambda n=expected_calls: Handlers.calls == n and clock.pending == 1)
                await clock.advance(delay)
            [dead] = await self.wait_dead_letters(app, source, 1)
            stats = app.stats("exhaust")
            assert (stats.failed, stats.retried, stats.dead_lettered, stats.processed) == (3, 2, 1, 0)
        assert Handlers.calls == 3
        assert Payment.model_validate_json(dead.body) == Payment(payment_id="p-2")
        assert dead.headers["x-origin"] == b"test"
        if self.has_keys:
            assert dead.key == b"key-2"
        if self.kind == "kafka":  # RabbitMQ keeps header tables sorted by name
            assert dead.headers.pairs[0] == ("x-origin", b"test"), "original headers first, byte for byte"
        self.check_dead_letter_headers(dead, source, Flaky, "failure 3", first=Handlers.seen[0], attempts=3)

    async def test_retries_stop_at_the_timeout_counted_from_the_first_failure(self) -> None:
        source = unique("timeout")
        clock = ManualClock()
        fixed = {"delay": 1.0, "multiplier": 1.0, "jitter": 0.0}

        class Handlers:
            calls = 0

            @self.listener(source, id="timeout", retry=Retry(attempts=10, backoff=fixed, timeout=2.5))
            async def handle(self, payment: Payment) -> None:
                type(self).calls += 1
                raise Flaky(f"failure {self.calls}")

        async with self.run(Handlers(), clock=clock) as app:
            await self.publish(app, source, Payment(payment_id="p-t"))
            for expected_calls in (1, 2):  # next attempts at 1 s and 2 s are within the 2.5 s timeout
                await app.wait_for(lambda n=expected_calls: Handlers.calls == n and clock.pending == 1)
                await clock.advance(1.0)
            [dead] = await self.wait_dead_letters(app, source, 1)  # one at 3 s would be past it
            stats = app.stats("timeout")
            assert (stats.failed, stats.retried, stats.dead_lettered) == (3, 2, 1)
        assert Handlers.calls == 3
        self.check_dead_letter_headers(dead, source, Flaky, "failure 3")

    async def test_a_refused_dead_letter_publish_leaves_the_source_unsettled_and_loses_nothing(self) -> None:
        source = unique("dl-refused")

        class Handlers:
            calls = 0

            @self.listener(source, id="dl-refused", retry=Retry(attempts=1))
            async def handle(self, payment: Payment) -> None:
                type(self).calls += 1
                raise Flaky("always fails")

        async with self.run(Handlers()) as app:
            with self.refusing_publishes(app, except_to=source) as refused:
                await self.publish(app, source, Payment(payment_id="p-r"))
                await app.wait_for(lambda: len(refused) >= 2, timeout=10)  # tried again after a back-off
                assert app.stats("dl-refused").dead_lettered == 0
                assert Handlers.calls == 1, "the handler is not run again for a failing settle"
        # Stopped while the dead-letter publish was refused: the source was never settled, so the next
        # app gets it again and this time it reaches the dead letter.
        async with self.run(Handlers()) as app:
            [dead] = await self.wait_dead_letters(app, source, 1, timeout=30)
        assert Handlers.calls == 2
        self.check_dead_letter_headers(dead, source, Flaky, "always fails")

    async def test_not_retryable_exception_goes_straight_to_the_dead_letter(self) -> None:
        source = unique("fatal")

        class Handlers:
            calls = 0

            @self.listener(source, id="fatal", retry=Retry(attempts=5, not_retryable=(ValueError,)))
            async def handle(self, payment: Payment) -> None:
                type(self).calls += 1
                raise ValueError("bad amount")

        async with self.run(Handlers()) as app:
            await self.publish(app, source, Payment(payment_id="p-3"))
            [dead] = await self.wait_dead_letters(app, source, 1)
        assert Handlers.calls == 1
        self.check_dead_letter_headers(dead, source, ValueError, "bad amount")

    async def test_poison_payload_is_dead_lettered_with_its_original_bytes(self) -> None:
        source = unique("poison")

        class Handlers:
            calls = 0

            @self.listener(source, id="poison", retry=Retry(attempts=5))
            async def handle(self, payment: Payment) -> None:
                type(self).calls += 1

        poison = b'{"payment_id": 42, "unterminated'
        async with self.run(Handlers()) as app:
            await self.publish(app, source, poison)
            [dead] = await self.wait_dead_letters(app, source, 1)
            assert app.stats("poison").failed == 1
        assert Handlers.calls == 0
        assert dead.body == poison
        self.check_dead_letter_headers(dead, source, MessageDecodeError, "cannot decode the payload")

    async def test_retry_later_uses_the_delay_the_handler_asked_for(self) -> None:
        source = unique("later")
        clock = ManualClock()

        class Handlers:
            attempts: list[int] = []

            @self.listener(source, id="later", retry=Retry(attempts=2, backoff=NO_JITTER))
            async def handle(self, payment: Payment, message: Message) -> None:
                self.attempts.append(message.attempt)
                if message.attempt == 1:
                    raise RetryLater("not yet", delay=5.0)

        handlers = Handlers()
        async with self.run(handlers, clock=clock) as app:
            await self.publish(app, source, Payment(payment_id="p-4"))
            await app.wait_for(lambda: clock.pending == 1)
            await clock.advance(4.9)
            assert handlers.attempts == [1]
            await clock.advance(0.1)
            await app.wait_for(lambda: handlers.attempts == [1, 2])

    async def test_reject_message_dead_letters_without_retrying(self) -> None:
        source = unique("reject")

        class Handlers:
            calls = 0

            @self.listener(source, id="reject", retry=Retry(attempts=5))
            async def handle(self, payment: Payment) -> None:
                type(self).calls += 1
                raise RejectMessage("unknown customer")

        async with self.run(Handlers()) as app:
            await self.publish(app, source, Payment(payment_id="p-5"))
            await self.wait_dead_letters(app, source, 1)
        assert Handlers.calls == 1

    async def test_disabled_dead_letter_discards_after_retries_and_moves_on(self) -> None:
        source = unique("discard")

        class Handlers:
            handled: list[str] = []

            @self.listener(
                source,
                id="discard",
                ordering="partition",
                retry=Retry(attempts=1),
                dead_letter={"enabled": False},
            )
            async def handle(self, payment: Payment) -> None:
                if payment.payment_id == "bad":
                    raise Flaky("always")
                self.handled.append(payment.payment_id)

        handlers = Handlers()
        async with self.run(handlers) as app:
            await self.publish(app, source, Payment(payment_id="bad"), key="same")
            await self.publish(app, source, Payment(payment_id="good"), key="same")
            await app.wait_for(lambda: handlers.handled == ["good"])
            stats = app.stats("discard")
            assert (stats.discarded, stats.processed, stats.dead_lettered) == (1, 1, 0)
            assert await self.dead_letters(app, source) == []
