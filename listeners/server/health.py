"""Liveness and readiness of an application, from its listeners.

Live: the event loop answers (the endpoint itself runs on it). Ready: the application finished
starting and every started listener is consuming (its subscription says so: connected, joined its
group, its consumers registered with the broker); not while a RabbitMQ connection is being re-made or
before a Kafka consumer joined its group, nor while stopping.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from listeners.runtime.container import ListenerContainer


@dataclass(frozen=True)
class Readiness:
    """Whether the application is ready, and why not: ``{listener id: reason}``."""

    ready: bool
    not_consuming: dict[str, str] = field(default_factory=dict)
    starting: bool = False

    def as_json(self) -> dict[str, object]:
        """The body of ``/health/ready``."""
        status = "UP" if self.ready else "DOWN"
        body: dict[str, object] = {"status": status}
        if self.starting:
            body["reason"] = "starting"
        if self.not_consuming:
            body["not_consuming"] = dict(sorted(self.not_consuming.items()))
        return body


def readiness(started: bool, listeners: Iterable[ListenerContainer]) -> Readiness:
    """Ready once ``started`` and while every listener that was started is consuming."""
    not_consuming: dict[str, str] = {}
    for listener in listeners:
        if listener.state == "created":
            continue  # not started (auto_startup: false): not expected to consume
        if listener.state != "running":
            not_consuming[listener.listener_id] = listener.state
            continue
        subscription = listener.subscription
        if subscription is None or not subscription.consuming:
            not_consuming[listener.listener_id] = "not consuming"
    return Readiness(started and not not_consuming, not_consuming, starting=not started)


ReadinessCheck = Callable[[], Readiness]
