"""The orders sample's container: ``listeners run samples.orders.app:container --profile local``."""

from __future__ import annotations

from dependency_injector import containers, providers

from samples.orders.demo import demo_publisher
from samples.orders.handlers import Notifier
from samples.orders.services import AuditLog, Billing, Mailer
from samples.orders.settings import OrdersSettings
from starter import ListenersContainer


class Container(ListenersContainer):
    wiring_config = containers.WiringConfiguration(modules=[".handlers"])

    settings_model = providers.Object(OrdersSettings)

    billing = providers.Singleton(
        Billing, flaky_every=ListenersContainer.settings.provided.orders.flaky_every
    )
    audit_log = providers.Singleton(AuditLog)
    mailer = providers.Singleton(Mailer)
    notifier = providers.Singleton(Notifier, mailer=mailer)

    demo = providers.Resource(
        demo_publisher,
        publisher=ListenersContainer.kafka_publisher,
        settings=ListenersContainer.settings.provided.orders.demo,
    )


container = Container()
