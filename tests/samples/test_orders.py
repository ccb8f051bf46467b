"""The orders sample as a user runs it: its local profile, its listeners, its failure paths."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

from listeners.testing import running
from samples.orders.app import Container
from samples.orders.models import OrderLine, OrderPlaced

CONFIG = Path(__file__).resolve().parents[2] / "config"


def order(order_id: str, quantity: int, customer: str = "ada") -> OrderPlaced:
    return OrderPlaced(
        order_id=order_id,
        customer_id=customer,
        email=f"{customer}@example.com",
        lines=[OrderLine(sku="sku-1", quantity=quantity, unit_price=Decimal("2.50"))],
    )


async def test_an_order_is_billed_forwarded_to_rabbitmq_notified_and_audited() -> None:
    container = Container()
    overrides = {"orders.demo.enabled": False, "orders.flaky_every": 0}
    async with running(container, config_dir=CONFIG, profiles=("local",), overrides=overrides) as app:
        await app.kafka.send("orders", order("o-1", 4), key="ada")
        mailer = container.mailer()
        await app.wait_for(lambda: len(mailer.sent) == 1, message="the notification")
        await app.wait_for(lambda: len(container.audit_log().entries) == 1, message="the audit entry")
        # counted once acknowledged, which (billing's idempotency key being marked done first) may
        # come just after the forwarded notification
        await app.wait_for(lambda: app.stats("billing").processed == 1, message="billing acknowledged")
        await app.wait_for(lambda: app.stats("notifier").processed == 1, message="notifier acknowledged")
    assert mailer.sent == [("ada@example.com", "Your order o-1 costs 10.00 EUR.")]
    assert container.audit_log().entries == ["order o-1 by ada: 1 line(s)"]


async def test_an_order_sent_twice_is_billed_once() -> None:
    container = Container()
    overrides = {"orders.demo.enabled": False, "orders.flaky_every": 0}
    async with running(container, config_dir=CONFIG, profiles=("local",), overrides=overrides) as app:
        await app.kafka.send("orders", order("o-2", 1), key="ada")
        await app.kafka.send("orders", order("o-2", 1), key="ada")
        await app.wait_for(lambda: app.stats("billing").duplicates_skipped == 1, message="the duplicate")
        await app.wait_for(lambda: len(container.audit_log().entries) == 2, message="both audited")
        await app.wait_for(lambda: app.stats("billing").processed == 1, message="billing acknowledged")
        await app.wait_for(lambda: len(container.mailer().sent) == 1, message="one notification")
    assert container.mailer().sent == [("ada@example.com", "Your order o-2 costs 2.50 EUR.")]


async def test_an_order_with_nothing_to_bill_is_dead_lettered_without_retries() -> None:
    container = Container()
    overrides = {"orders.demo.enabled": False, "orders.flaky_every": 0}
    async with running(container, config_dir=CONFIG, profiles=("local",), overrides=overrides) as app:
        await app.kafka.send("orders", order("o-0", 0), key="ada")
        await app.wait_for(lambda: len(app.topic("orders-dlt")) == 1, message="the dead letter")
        stats = app.stats("billing")
        assert (stats.failed, stats.retried, stats.dead_lettered) == (1, 0, 1)
        [dead] = app.topic("orders-dlt")
    assert OrderPlaced.model_validate_json(dead.value) == order("o-0", 0)
    assert dict(dead.headers)["kafka_dlt-exception-fqcn"] == b"samples.orders.services.InvalidOrder"


async def test_the_local_profile_demo_publishes_and_a_flaky_call_is_retried() -> None:
    container = Container()
    overrides = {
        "orders.demo.interval": "1ms",
        "orders.demo.count": 6,
        "orders.flaky_every": 2,
        "listeners.defaults.retry.backoff.delay": "10ms",
    }
    async with running(container, config_dir=CONFIG, profiles=("local",), overrides=overrides) as app:
        await app.wait_for(lambda: app.stats("audit").processed == 6, message="six audited orders")
        await app.wait_for(lambda: app.stats("billing").processed == 6, message="six billed orders")
        await app.wait_for(lambda: app.stats("notifier").processed == 6, message="six notifications")
        billing = app.stats("billing")
        assert (billing.retried, billing.dead_lettered) == (3, 0), "orders 2, 4 and 6 time out once each"
    assert sorted(to for to, _ in container.mailer().sent) == sorted(
        f"{name}@example.com" for name in ("grace", "alan", "edsger", "barbara", "ada", "grace")
    )
