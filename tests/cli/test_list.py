"""``listeners list``: the resolved listeners, their effective config and where each value came from."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.cli.helpers import app_options, parse_listing, run_cli

SAMPLE = "samples.orders.app:container"


def test_lists_the_sample_listeners_with_values_and_their_sources() -> None:
    result = run_cli("list", SAMPLE, "--profile", "local", timeout=15)

    assert result.returncode == 0, result.stderr
    header, listed = parse_listing(result.stdout)
    assert header["profiles"] == "local"
    assert header["config files"] == "config/application.yaml, config/application-local.yaml"
    assert set(listed) == {"billing", "audit", "notifier"}
    billing = listed["billing"]
    assert (billing.kind, billing.handler) == ("kafka", "samples.orders.handlers.bill")
    assert billing.rows["topics"] == ("orders", "decorator")
    assert billing.rows["concurrency"] == ("2", "decorator")
    assert billing.rows["retry.backoff.delay"] == ("500ms", "file config/application-local.yaml")
    assert billing.rows["send_to"] == ("rabbit:payments/payment.requested", "decorator")
    assert (listed["audit"].kind, listed["notifier"].kind) == ("kafka", "rabbit")
    assert listed["notifier"].rows["routing_key"] == ("payment.*", "decorator")


def test_list_starts_nothing() -> None:
    result = run_cli("list", SAMPLE, "--profile", "local", timeout=15)

    assert result.returncode == 0, result.stderr
    # The local profile enables the demo publisher resource; listing must not start it or any listener.
    assert " started" not in result.stderr
    assert "published order" not in result.stderr
    assert "Traceback" not in result.stderr


def test_list_connects_to_no_broker(marker_env: dict[str, str], markers: Path) -> None:
    result = run_cli(
        "list", "tests.cli.apps.unreachable.app:container", *app_options("unreachable"), env=marker_env
    )

    assert result.returncode == 0, result.stderr
    header, listed = parse_listing(result.stdout)
    assert header["kafka"].startswith("localhost:9")
    assert listed["orders"].rows["topics"] == ("orders", "decorator")
    assert sorted(path.name for path in markers.iterdir()) == []  # its publishing resource never started


def test_env_variables_override_config_and_are_named_as_the_source() -> None:
    result = run_cli(
        "list", SAMPLE, "--profile", "local", env={"LISTENERS__LISTENER__BILLING__CONCURRENCY": "5"}
    )

    assert result.returncode == 0, result.stderr
    _, listed = parse_listing(result.stdout)
    assert listed["billing"].rows["concurrency"] == ("5", "env LISTENERS__LISTENER__BILLING__CONCURRENCY")
    assert listed["audit"].rows["concurrency"] == ("1", "file config/application.yaml")


@pytest.mark.parametrize(
    ("options", "expected_profiles"),
    [
        pytest.param([], "local", id="from-env"),
        pytest.param(["--profile", "dev"], "dev", id="flag-beats-env"),
    ],
)
def test_profiles_come_from_env_unless_given_as_flags(options: list[str], expected_profiles: str) -> None:
    result = run_cli("list", SAMPLE, *options, env={"LISTENERS_PROFILES": "local"})

    assert result.returncode == 0, result.stderr
    header, _ = parse_listing(result.stdout)
    assert header["profiles"] == expected_profiles
    assert header["config files"] == f"config/application.yaml, config/application-{expected_profiles}.yaml"


@pytest.mark.parametrize("attribute", ["container", "Container", "make_container"])
def test_container_may_be_an_instance_a_class_or_a_factory(attribute: str) -> None:
    result = run_cli("list", f"tests.cli.apps.jobs.app:{attribute}", *app_options("jobs"))

    assert result.returncode == 0, result.stderr
    header, listed = parse_listing(result.stdout)
    assert header["shutdown_timeout"] == "20s"
    assert {listener_id: listener.handler for listener_id, listener in listed.items()} == {
        "worker": "tests.cli.apps.jobs.handlers.work",
        "sync-worker": "tests.cli.apps.jobs.handlers.sync_work",
    }
