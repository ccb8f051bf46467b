"""The sample's own config section, next to ``listeners`` in application.yaml."""

from __future__ import annotations

from pydantic import Field

from listeners.durations import Duration
from starter.settings import ApplicationSettings, Section


class DemoSettings(Section):
    """``orders.demo``: publish generated orders so the sample does something on its own."""

    enabled: bool = False
    interval: Duration = 1.0
    count: int = Field(default=0, ge=0, description="stop after this many orders; 0 = until stopped")


class OrdersSection(Section):
    """``orders``."""

    flaky_every: int = Field(default=0, ge=0, description="every n-th order times out once in billing")
    demo: DemoSettings = DemoSettings()


class OrdersSettings(ApplicationSettings):
    orders: OrdersSection = OrdersSection()
