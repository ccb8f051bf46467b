"""Idempotency: a business key is handled once; duplicates are skipped or wait, never dropped."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from listeners import Message, Retry
from listeners.exceptions import IdempotencyKeyError, IdempotencyStoreError
from listeners.idempotency.memory import MemoryIdempotencyStore
from listeners.idempotency.store import Claim
from tests.contract.configs import TransportConfig, unique
from tests.contract.suites.retry import Flaky, Payment

MEMORY_STORE = {"listeners.idempotency.store": "memory"}
QUICK_RETRY = Retry.model_validate(
    {"attempts": 3, "backoff": {"delay": 0.05, "multiplier": 1.0, "jitter": 0}}
)


class OutageStore(MemoryIdempotencyStore):
    """The in-memory store, unreachable while ``down`` is set (as a store whose server went away)."""

    def __init__(self) -> None:
        super().__init__()
        self.down = asyncio.Event()
        self.refused = 0

    async def claim(self, namespace: str, key: str, *, lease: float) -> Claim:
        self._refuse_while_down()
        return await super().claim(namespace, key, lease=lease)

    async def claim_many(self, namespace: str, keys: Sequence[str], *, lease: float) -> list[Claim]:
        self._refuse_while_down()
        return await super().claim_many(namespace, keys, lease=lease)

    def _refuse_while_down(self) -> None:
        if self.down.is_set():
            self.refused += 1
            raise IdempotencyStoreError("store unreachable (test)")


class IdempotencySuite(TransportConfig):
    async def test_a_duplicate_business_key_is_handled_once_and_skipped_after(self) -> None:
        source = unique("idem")

        class Handlers:
            handled: list[str] = []

            @self.listener(source, id="idem", idempotency_key="payment_id")
            async def handle(self, payment: Payment) -> None:
                self.handled.append(payment.payment_id)

        async with self.run(Handlers(), overrides=MEMORY_STORE) as app:
            for payment_id in ("p-1", "p-1", "p-2", "p-1"):
                await self.publish(app, source, Payment(payment_id=payment_id), key=payment_id)
            await app.wait_for(lambda: app.stats("idem").duplicates_skipped == 2, timeout=30)
            await app.wait_for(lambda: app.stats("idem").processed == 2, timeout=10)
        assert sorted(Handlers.handled) == ["p-1", "p-2"]

    async def test_a_key_from_a_header_or_a_function(self) -> None:
        by_header, by_function = unique("idem-h"), unique("idem-f")

        def key_of(message: Message, payment: Payment) -> str:
            return f"{payment.payment_id}/{message.headers.get_str('tenant')}"

        class Handlers:
            handled: list[tuple[str, str]] = []

            @self.listener(by_header, id="idem-h", idempotency_key="header:x-request-id")
            async def from_header(self, payment: Payment) -> None:
                self.handled.append(("header", payment.payment_id))

            @self.listener(by_function, id="idem-f", idempotency_key=key_of)
            async def from_function(self, payment: Payment) -> None:
                self.handled.append(("function", payment.payment_id))

        async with self.run(Handlers(), overrides=MEMORY_STORE) as app:
            for request, payment_id in (("r-1", "a"), ("r-1", "b"), ("r-2", "c")):
                await self.publish(
                    app, by_header, Payment(payment_id=payment_id), headers={"x-request-id": request}
                )
            for tenant in ("t-1", "t-1", "t-2"):
                await self.publish(app, by_function, Payment(payment_id="x"), headers={"tenant": tenant})
            await app.wait_for(
                lambda: (
                    app.stats("idem-h").duplicates_skipped == 1
                    and app.stats("idem-f").duplicates_skipped == 1
                ),
                timeout=30,
            )
            await app.wait_for(lambda: len(Handlers.handled) == 4, timeout=10)
        handled = sorted(Handlers.handled)
        assert handled.count(("function", "x")) == 2, "tenants t-1 and t-2, once each"
        headers = [payment for how, payment in handled if how == "header"]
        assert len(headers) == 2
        assert "c" in headers
        assert headers[0] in ("a", "b"), "one of the two messages with request r-1, on either partition"

    async def test_a_failed_attempt_releases_its_key_so_the_retry_runs(self) -> None:
        source = unique("idem-retry")

        class Handlers:
            attempts: list[int] = []

            @self.listener(source, id="idem-retry", idempotency_key="payment_id", retry=QUICK_RETRY)
            async def handle(self, payment: Payment, message: Message) -> None:
                self.attempts.append(message.attempt)
                if message.attempt == 1:
                    raise Flaky("first try fails")

        async with self.run(Handlers(), overrides=MEMORY_STORE) as app:
            await self.publish(app, source, Payment(payment_id="p-r"))
            await app.wait_for(lambda: app.stats("idem-retry").processed == 1, timeout=30)
            await self.publish(app, source, Payment(payment_id="p-r"))
            await app.wait_for(lambda: app.stats("idem-retry").duplicates_skipped == 1, timeout=30)
        assert Handlers.attempts == [1, 2]

    async def test_a_duplicate_in_progress_elsewhere_waits_and_is_then_skipped(self) -> None:
        source = unique("idem-busy")
        release = asyncio.Event()

        class Handlers:
            started: list[str] = []

            @self.listener(source, id="idem-busy", idempotency_key="payment_id", ordering="none")
            async def handle(self, payment: Payment, message: Message) -> None:
                self.started.append(payment.payment_id)
                await release.wait()

        async with self.run(Handlers(), overrides=MEMORY_STORE) as app:
            await self.publish(app, source, Payment(payment_id="p-b"))
            await app.wait_for(lambda: Handlers.started == ["p-b"], timeout=30)
            await self.publish(app, source, Payment(payment_id="p-b"))
            await asyncio.sleep(0.5)  # the duplicate is claimed, finds the key in progress, waits
            assert app.stats("idem-busy").duplicates_skipped == 0
            assert Handlers.started == ["p-b"], "a duplicate must not run while the first is in progress"
            release.set()
            stats = app.stats("idem-busy")
            await app.wait_for(lambda: (stats.processed, stats.duplicates_skipped) == (1, 1), timeout=10)
        assert Handlers.started == ["p-b"]

    async def test_a_handler_slower_than_its_lease_keeps_its_key(self) -> None:
        source = unique("idem-slow")
        short_lease = {"lease": 0.3}

        class Handlers:
            running = 0
            overlapped = False
            started: list[str] = []

            @self.listener(source, id="idem-slow", idempotency_key="payment_id", idempotency=short_lease,
                           ordering="none")  # fmt: skip
            async def handle(self, payment: Payment) -> None:
                type(self).running += 1
                type(self).overlapped |= self.running > 1
                self.started.append(payment.payment_id)
                await asyncio.sleep(1.0)  # more than three leases: renewed meanwhile
                type(self).running -= 1

        async with self.run(Handlers(), overrides=MEMORY_STORE) as app:
            await self.publish(app, source, Payment(payment_id="p-s"))
            await app.wait_for(lambda: Handlers.started == ["p-s"], timeout=30)
            await self.publish(app, source, Payment(payment_id="p-s"))
            stats = app.stats("idem-slow")
            await app.wait_for(lambda: (stats.processed, stats.duplicates_skipped) == (1, 1), timeout=10)
        assert Handlers.started == ["p-s"]
        assert not Handlers.overlapped

    async def test_a_message_without_its_key_is_dead_lettered(self) -> None:
        source = unique("idem-nokey")

        class Handlers:
            calls = 0

            @self.listener(source, id="idem-nokey", idempotency_key="header:x-request-id")
            async def handle(self, payment: Payment) -> None:
                type(self).calls += 1

        async with self.run(Handlers(), overrides=MEMORY_STORE) as app:
            await self.publish(app, source, Payment(payment_id="p-n"))
            [dead] = await self.wait_dead_letters(app, source, 1, timeout=30)
        assert Handlers.calls == 0
        self.check_dead_letter_headers(dead, source, IdempotencyKeyError, "no header 'x-request-id'")

    async def test_a_store_outage_stops_handling_when_failing_closed(self) -> None:
        source = unique("idem-closed")
        store = OutageStore()
        store.down.set()

        class Handlers:
            handled: list[str] = []

            @self.listener(source, id="idem-closed", idempotency_key="payment_id")
            async def handle(self, payment: Payment) -> None:
                self.handled.append(payment.payment_id)

        async with self.run(Handlers(), overrides=MEMORY_STORE, idempotency_store=store) as app:
            await self.publish(app, source, Payment(payment_id="p-c"))
            await app.wait_for(lambda: store.refused >= 2, timeout=30)  # tried again after a back-off
            assert Handlers.handled == [], "fail closed: nothing is handled without the store"
            assert app.stats("idem-closed").store_errors >= 1
            store.down.clear()
            await app.wait_for(lambda: Handlers.handled == ["p-c"], timeout=10)
            await self.publish(app, source, Payment(payment_id="p-c"))
            await app.wait_for(lambda: app.stats("idem-closed").duplicates_skipped == 1, timeout=30)
        assert Handlers.handled == ["p-c"]

    async def test_a_store_outage_handles_without_a_claim_when_failing_open(self) -> None:
        source = unique("idem-open")
        store = OutageStore()
        store.down.set()
        fail_open: dict[str, Any] = {"on_store_error": "fail_open"}

        class Handlers:
            handled: list[str] = []

            @self.listener(source, id="idem-open", idempotency_key="payment_id", idempotency=fail_open)
            async def handle(self, payment: Payment) -> None:
                self.handled.append(payment.payment_id)

        async with self.run(Handlers(), overrides=MEMORY_STORE, idempotency_store=store) as app:
            await self.publish(app, source, Payment(payment_id="p-o"))
            await self.publish(app, source, Payment(payment_id="p-o"))
            await app.wait_for(lambda: len(Handlers.handled) == 2, timeout=30)
        assert Handlers.handled == ["p-o", "p-o"], "fail open: duplicates run while the store is down"
        assert app.stats("idem-open").store_errors == 2
