"""Plain services of the orders sample. They know nothing about brokers or the framework."""

from __future__ import annotations

import logging
import threading
from decimal import Decimal

from samples.orders.models import OrderPlaced, PaymentRequested

log = logging.getLogger("samples.orders")


class InvalidOrder(ValueError):
    """The order itself is wrong; retrying cannot help (declared not retryable on the listener)."""


class PaymentGatewayTimeout(TimeoutError):
    """A transient failure; the listener retries it after a back-off."""


class Billing:
    """Prices orders. Every ``flaky_every``-th order times out once, to show a retry in the demo."""

    def __init__(self, flaky_every: int = 0) -> None:
        self._flaky_every = flaky_every
        self._orders = 0
        self._timed_out: set[str] = set()

    def charge(self, order: OrderPlaced) -> PaymentRequested:
        if order.order_id not in self._timed_out:
            self._orders += 1
            if self._flaky_every and self._orders % self._flaky_every == 0:
                self._timed_out.add(order.order_id)
                raise PaymentGatewayTimeout(f"payment gateway timed out pricing {order.order_id}")
        amount = sum((line.unit_price * line.quantity for line in order.lines), Decimal(0))
        if amount <= 0:
            raise InvalidOrder(f"order {order.order_id} has nothing to bill")
        return PaymentRequested(
            order_id=order.order_id,
            customer_id=order.customer_id,
            email=order.email,
            amount=amount,
            currency=order.currency,
        )


class Mailer:
    """Sends notifications (here: logs them and keeps them for tests)."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, str]] = []

    async def send(self, to: str, text: str) -> None:
        self.sent.append((to, text))
        log.info("mail to %s: %s", to, text)


class AuditLog:
    """A synchronous, blocking dependency: its listener runs in the handler thread pool."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.entries: list[str] = []

    def record(self, entry: str) -> None:
        with self._lock:
            self.entries.append(entry)
