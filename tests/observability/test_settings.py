"""The ``listeners.metrics`` and ``listeners.server`` settings."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from starter.settings import ListenersSettings


def test_metrics_and_the_server_are_off_by_default() -> None:
    settings = ListenersSettings()
    assert settings.metrics.enabled is False
    assert settings.metrics.lag_interval == 5.0
    assert settings.server.port is None
    assert settings.server.host == "0.0.0.0"


def test_durations_and_ports_are_validated() -> None:
    settings = ListenersSettings.model_validate(
        {"metrics": {"lag_interval": "250ms"}, "server": {"port": 8080}}
    )
    assert settings.metrics.lag_interval == 0.25
    assert settings.server.port == 8080
    with pytest.raises(ValidationError, match=r"server\.port"):
        ListenersSettings.model_validate({"server": {"port": 70000}})
    with pytest.raises(ValidationError, match=r"metrics\.exporter"):
        ListenersSettings.model_validate({"metrics": {"exporter": "otlp"}})
