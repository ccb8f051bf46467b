"""Listeners whose dead letters the ``listeners dlt`` tests show and replay."""

from __future__ import annotations

from listeners import kafka_listener, rabbit_listener


class PaymentDeclined(Exception):
    """What the dead letters in the tests failed with (besides ValueError)."""


@kafka_listener("dl-payments", id="payments")
async def pay(payment: str) -> None:
    raise PaymentDeclined(payment)


@kafka_listener("dl-left", "dl-right", id="both_sides")
async def both_sides(payment: str) -> None:
    raise PaymentDeclined(payment)


@kafka_listener("dl-discarded", id="discarding", dead_letter={"enabled": False})
async def discard(payment: str) -> None:
    raise PaymentDeclined(payment)


@rabbit_listener("dl-mails", id="mails")
async def mail(address: str) -> None:
    raise PaymentDeclined(address)
