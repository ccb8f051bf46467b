"""The HTTP endpoints on the embedded broker: liveness, readiness naming what does not consume, the
``/metrics`` page parsed as Prometheus text, and the errors for what is not configured."""

from __future__ import annotations

import sys
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from listeners import kafka_listener, rabbit_listener
from listeners.exceptions import ConfigError
from listeners.testing import running
from tests.contract.configs import unique
from tests.observability.helpers import http_get, ready
from tests.support.apps import app_with

SERVED = {"listeners.server.port": 0, "listeners.server.host": "127.0.0.1"}
METERED = {**SERVED, "listeners.metrics.enabled": True}


def handlers(topic: str, queue: str) -> Any:
    class Handlers:
        @kafka_listener(topic, id="billing")
        async def bill(self, order: dict[str, Any]) -> None: ...

        @rabbit_listener(queue, id="mailer")
        async def mail(self, text: str) -> None:
            if text == "fail":
                raise ValueError(text)

    return Handlers()


async def test_live_and_ready_while_every_listener_consumes_and_not_ready_naming_a_stopped_one() -> None:
    async with running(app_with(handlers(unique("e-orders"), unique("e-mails"))), overrides=SERVED) as app:
        port = app.app.server_port
        assert port
        status, headers, body = await http_get(port, "/health/live")
        assert (status, headers["content-type"], body) == (200, "application/json", b'{"status":"UP"}')
        assert await ready(port) == (200, {"status": "UP"})
        await app.app.listener("mailer").stop(1.0)
        assert await ready(port) == (503, {"status": "DOWN", "not_consuming": {"mailer": "stopped"}})
        assert (await http_get(port, "/health/live"))[0] == 200


async def test_a_listener_not_started_does_not_hold_readiness_back() -> None:
    class Handlers:
        @kafka_listener(unique("e-idle"), id="idle", auto_startup=False)
        async def idle(self, order: dict[str, Any]) -> None: ...

    async with running(app_with(Handlers()), overrides=SERVED) as app:
        assert await ready(app.app.server_port) == (200, {"status": "UP"})


async def test_the_metrics_page_is_prometheus_text_with_the_message_and_listener_metrics() -> None:
    topic, queue = unique("e-orders"), unique("e-mails")
    async with running(app_with(handlers(topic, queue)), overrides=METERED) as app:
        await app.kafka.send(topic, {"id": 1})
        await app.rabbit.publish("", queue, "fail")
        await app.wait_for(
            lambda: app.stats("billing").processed == 1 and app.stats("mailer").dead_lettered == 1
        )
        status, headers, body = await http_get(app.app.server_port, "/metrics")
    assert status == 200
    assert headers["content-type"].startswith("text/plain")
    families = {family.name: family for family in text_string_to_metric_families(body.decode())}
    assert {
        "messaging_process_duration_seconds",
        "messaging_client_consumed_messages",
        "messaging_client_sent_messages",
        "listeners_listener_processed",
        "listeners_listener_retries",
        "listeners_listener_dead_letters",
        "listeners_listener_duplicates_skipped",
        "listeners_listener_released",
        "listeners_listener_in_flight",
        "listeners_consumer_lag",
        "listeners_consumer_time_lag_seconds",
    } <= set(families)
    assert families["messaging_process_duration_seconds"].type == "histogram"
    assert families["listeners_consumer_lag"].type == "gauge"
    samples = families["messaging_process_duration_seconds"].samples
    failed = [s for s in samples if s.name.endswith("_count") and s.labels.get("error_type") == "ValueError"]
    assert [s.value for s in failed] == [3.0]  # three attempts (default retry), each failed
    assert failed[0].labels["messaging_system"] == "rabbitmq"
    dead = [s for s in families["listeners_listener_dead_letters"].samples if s.name.endswith("_total")]
    assert {(s.labels["listeners_listener_id"], s.value) for s in dead} == {("billing", 0.0), ("mailer", 1.0)}
    lag = families["listeners_consumer_lag"].samples
    assert {s.labels["messaging_destination_name"] for s in lag} == {topic, queue}


async def test_without_metrics_the_page_says_how_to_turn_them_on_and_unknown_paths_are_404() -> None:
    async with running(app_with(handlers(unique("e-orders"), unique("e-mails"))), overrides=SERVED) as app:
        port = app.app.server_port
        status, _, body = await http_get(port, "/metrics")
        assert (status, body) == (404, b"metrics are off: set listeners.metrics.enabled: true\n")
        assert (await http_get(port, "/nothing"))[0] == 404
        assert (await http_get(port, "/health/live", method="POST"))[0] == 405
        status, headers, body = await http_get(port, "/health/ready", method="HEAD")
        assert (status, body) == (200, b"")
        assert int(headers["content-length"]) > 0


async def test_metrics_on_the_endpoint_without_the_prometheus_extra_fail_startup(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "prometheus_client", None)
    monkeypatch.setitem(sys.modules, "opentelemetry.exporter.prometheus", None)
    with pytest.raises(ConfigError, match=r"pip install 'listeners\[prometheus\]'"):
        async with running(app_with(handlers(unique("e-orders"), unique("e-mails"))), overrides=METERED):
            pass


async def test_no_server_without_a_port() -> None:
    async with running(app_with(handlers(unique("e-orders"), unique("e-mails")))) as app:
        assert app.app.server_port is None
