"""The listeners of the orders sample: a function listener, a sync listener and a class listener."""

from __future__ import annotations

import logging

from dependency_injector.wiring import Provide, inject

from listeners import Message, Retry, kafka_listener, rabbit_listener, send_to
from samples.orders.models import OrderPlaced, PaymentRequested
from samples.orders.services import AuditLog, Billing, InvalidOrder, Mailer

log = logging.getLogger("samples.orders")


@kafka_listener(
    "orders",
    id="billing",
    concurrency=2,
    retry=Retry(attempts=3, not_retryable=(InvalidOrder,)),
    idempotency_key="order_id",  # an order sent twice is billed once
)
@send_to(exchange="payments", routing_key="payment.requested")
@inject
async def bill(
    order: OrderPlaced, message: Message, billing: Billing = Provide["billing"]
) -> PaymentRequested:
    """Price each order and forward a payment request to RabbitMQ (confirmed before the offset commits)."""
    payment = billing.charge(order)
    log.info(
        "billed %s for %s %s (partition %s, attempt %d)",
        order.order_id,
        payment.amount,
        payment.currency,
        message.partition,
        message.attempt,
    )
    return payment


@kafka_listener("orders", id="audit")
def audit(order: OrderPlaced, audit_log: AuditLog = Provide["audit_log"]) -> None:
    """A second consumer group on the same topic; sync, so it runs in the handler thread pool."""
    audit_log.record(f"order {order.order_id} by {order.customer_id}: {len(order.lines)} line(s)")


class Notifier:
    """Listener methods on an object the container provides (like a Spring bean)."""

    def __init__(self, mailer: Mailer) -> None:
        self._mailer = mailer

    @rabbit_listener("notifications", id="notifier", exchange="payments", routing_key="payment.*")
    async def on_payment(self, payment: PaymentRequested) -> None:
        await self._mailer.send(
            payment.email, f"Your order {payment.order_id} costs {payment.amount} {payment.currency}."
        )
