"""Effective listener options: precedence of defaults, decorator and config, and where values came from."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from dependency_injector import providers

from listeners import ConfigError, Retry, StartupError, kafka_listener, rabbit_listener
from starter import ListenersContainer
from starter.application import Plan, plan
from starter.loading import LaunchOptions
from starter.resolve import ResolvedListener, source_of


class Billing:
    @kafka_listener("orders", id="billing", concurrency=2, retry=Retry(attempts=5))
    async def bill(self, order: dict[str, Any]) -> None: ...


class Notifier:
    @rabbit_listener("notifications", exchange="events", routing_key="order.*")
    async def on_event(self, event: dict[str, Any]) -> None: ...


class Container(ListenersContainer):
    billing = providers.Singleton(Billing)
    notifier = providers.Singleton(Notifier)


def resolve(
    tmp_path: Path, files: dict[str, str], environ: dict[str, str] | None = None, profiles=()
) -> Plan:  # type: ignore[no-untyped-def]
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    container = Container()
    launch = LaunchOptions(config_dir=tmp_path, profiles=tuple(profiles), environ=environ or {})
    container.launch.override(providers.Object(launch))
    return plan(container)


def listener(result: Plan, listener_id: str) -> ResolvedListener:
    return next(resolved for resolved in result.listeners if resolved.listener_id == listener_id)


def test_precedence_default_config_defaults_decorator_listener_config(tmp_path: Path) -> None:
    result = resolve(
        tmp_path,
        {
            "application.yaml": """
listeners:
  defaults:
    concurrency: 3
    max_in_flight: 10
    retry: {attempts: 2, backoff: {delay: 2s}}
  listener:
    billing:
      max_in_flight: 20
""",
        },
        environ={"LISTENERS__LISTENER__BILLING__RETRY__BACKOFF__MULTIPLIER": "3"},
    )
    billing = listener(result, "billing")
    options = billing.endpoint.options
    assert options.concurrency == 2, "the decorator beats listeners.defaults"
    assert options.max_in_flight == 20, "listeners.listener.<id> beats everything below"
    assert options.retry.attempts == 5, "decorator over config defaults, field by field"
    assert options.retry.backoff.delay == 2.0, "a sibling from config defaults survives the decorator's retry"
    assert options.retry.backoff.multiplier == 3.0
    assert options.prefetch == 100
    file = f"file {tmp_path / 'application.yaml'}"
    assert source_of(billing, "concurrency") == "decorator"
    assert source_of(billing, "max_in_flight") == file
    assert source_of(billing, "retry.attempts") == "decorator"
    assert source_of(billing, "retry.backoff.delay") == file
    assert (
        source_of(billing, "retry.backoff.multiplier")
        == "env LISTENERS__LISTENER__BILLING__RETRY__BACKOFF__MULTIPLIER"
    )
    assert source_of(billing, "retry.backoff.jitter") == "default"
    notifier = listener(result, "notifier_on_event")
    assert notifier.endpoint.options.concurrency == 3
    assert source_of(notifier, "concurrency") == file


def test_ordering_defaults_per_transport_and_group_defaults_to_the_id(tmp_path: Path) -> None:
    result = resolve(tmp_path, {})
    billing = listener(result, "billing")
    assert billing.endpoint.options.ordering == "partition"
    assert billing.endpoint.group_id == "billing"
    assert listener(result, "notifier_on_event").endpoint.options.ordering == "none"


def test_config_can_move_a_listener_to_other_topics(tmp_path: Path) -> None:
    result = resolve(
        tmp_path, {"application.yaml": "listeners: {listener: {billing: {topics: [orders-v2]}}}"}
    )
    assert listener(result, "billing").endpoint.options.topics == ("orders-v2",)


def test_an_option_of_the_other_transport_is_rejected_with_its_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as error:
        resolve(tmp_path, {"application.yaml": "listeners: {listener: {billing: {prefetch: 5}}}"})
    assert str(error.value) == (
        f"file {tmp_path / 'application.yaml'}: listeners.listener.billing.prefetch: "
        "not an option of kafka listener 'billing'"
    )


def test_where_to_consume_from_cannot_be_a_default(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"listeners\.defaults\.topics: where a listener consumes from"):
        resolve(tmp_path, {"application.yaml": "listeners: {defaults: {topics: [x]}}"})


def test_env_var_ids_match_ids_written_with_dashes(tmp_path: Path) -> None:
    class Audit:
        @kafka_listener("orders", id="order-audit")
        async def audit(self, order: dict[str, Any]) -> None: ...

    class AuditContainer(ListenersContainer):
        audit = providers.Singleton(Audit)

    container = AuditContainer()
    environ = {"LISTENERS__LISTENER__ORDER_AUDIT__CONCURRENCY": "4"}
    container.launch.override(
        providers.Object(LaunchOptions(config_dir=tmp_path, profiles=(), environ=environ))
    )
    [resolved] = plan(container).listeners
    assert resolved.endpoint.options.concurrency == 4
    assert source_of(resolved, "concurrency") == "env LISTENERS__LISTENER__ORDER_AUDIT__CONCURRENCY"


def test_duplicate_ids_name_both_handlers() -> None:
    class First:
        @kafka_listener("a", id="same")
        async def handle(self, item: str) -> None: ...

    class Second:
        @rabbit_listener("b", id="same")
        async def handle(self, item: str) -> None: ...

    class Duplicated(ListenersContainer):
        first = providers.Singleton(First)
        second = providers.Singleton(Second)

    container = Duplicated()
    container.launch.override(providers.Object(LaunchOptions(config_dir=None, environ={})))
    with pytest.raises(StartupError) as error:
        plan(container)
    text = str(error.value)
    assert "duplicate listener id 'same'" in text
    assert "First.handle (provider 'first'" in text
    assert "Second.handle (provider 'second'" in text


def test_config_topics_over_a_declared_pattern_is_an_error_naming_both_sources(tmp_path: Path) -> None:
    class Patterned:
        @kafka_listener(pattern="orders.*", id="patterned")
        async def handle(self, order: dict[str, Any]) -> None: ...

    class PatternContainer(ListenersContainer):
        patterned = providers.Singleton(Patterned)

    (tmp_path / "application.yaml").write_text("listeners: {listener: {patterned: {topics: [a]}}}")
    container = PatternContainer()
    container.launch.override(providers.Object(LaunchOptions(config_dir=tmp_path, environ={})))
    with pytest.raises(
        ConfigError, match=r"topics \(file .*application.yaml\) and topic_pattern \(decorator\)"
    ):
        plan(container)
