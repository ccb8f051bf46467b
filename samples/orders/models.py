"""Messages of the orders sample (pydantic models: validated on the way in, JSON on the wire)."""

from __future__ import annotations

from decimal import Decimal

from pydantic import BaseModel, Field


class OrderLine(BaseModel):
    sku: str
    quantity: int = Field(ge=0)
    unit_price: Decimal = Field(ge=0)


class OrderPlaced(BaseModel):
    """Published to the Kafka topic ``orders``, keyed by customer so one customer's orders stay in order."""

    order_id: str
    customer_id: str
    email: str
    lines: list[OrderLine]
    currency: str = "EUR"


class PaymentRequested(BaseModel):
    """Forwarded by billing to the RabbitMQ exchange ``payments`` (routing key ``payment.requested``)."""

    order_id: str
    customer_id: str
    email: str
    amount: Decimal
    currency: str
