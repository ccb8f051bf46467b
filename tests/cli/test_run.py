"""``listeners run``: start, log each listener, drain on the first signal, exit at once on the second."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from tests.cli.apps.markers import FAIL_CLEANUP_ENV, PUBLISH_ENV, RELEASE
from tests.cli.helpers import REPO_ROOT, StartCli, app_options, wait_until

SUMMARY = (
    r"listener {id} stopped: processed=(?P<processed>\d+) failed=(?P<failed>\d+) retried=\d+ "
    r"dead_lettered=\d+ duplicates_skipped=\d+ discarded=\d+ released=(?P<released>\d+) store_errors=\d+$"
)
STOPPING = r"listeners: {signal} received: stopping \(send it again to exit at once\)$"


def jobs_env(marker_env: dict[str, str], *topics: str) -> dict[str, str]:
    """The jobs app publishes one job to each of ``topics`` at startup."""
    return {**marker_env, PUBLISH_ENV: ",".join(topics)}


def test_sample_runs_until_sigterm_and_logs_a_summary_per_listener(start_cli: StartCli) -> None:
    app = start_cli(
        "run",
        "samples.orders.app:container",
        "--profile",
        "local",
        "--app-dir",
        str(REPO_ROOT),
        "--config-dir",
        str(REPO_ROOT / "config"),
    )
    app.wait_for_line(r"samples\.orders: billed o-[0-9a-f]+-\d+ for ")
    app.wait_for_line(r"samples\.orders: mail to \S+@example\.com: ")

    app.send(signal.SIGTERM)

    assert app.wait_exit(timeout=15) == 0, app.stderr
    started = {
        match["id"]: match["line"] for match in app.matching(r"listener (?P<id>\S+) started: (?P<line>.*)")
    }
    assert set(started) == {"billing", "audit", "notifier"}
    assert started["billing"].startswith("transport=kafka topics=orders group=billing concurrency=2 ")
    assert started["audit"].startswith("transport=kafka topics=orders group=audit concurrency=1 ")
    assert started["notifier"].startswith("transport=rabbit queue=notifications ")
    summaries = {listener_id: app.matching(SUMMARY.format(id=listener_id)) for listener_id in started}
    assert all(len(found) == 1 for found in summaries.values()), app.stderr
    assert int(summaries["billing"][0]["processed"]) >= 1
    assert int(summaries["notifier"][0]["processed"]) >= 1
    assert app.lines[-1].endswith("listeners: stopped"), app.stderr
    assert "Traceback" not in app.stderr


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_first_signal_waits_for_in_flight_work_then_exits_0(
    start_cli: StartCli, markers: Path, marker_env: dict[str, str], signum: signal.Signals
) -> None:
    app = start_cli(
        "run", "tests.cli.apps.jobs.app:Container", *app_options("jobs"), env=jobs_env(marker_env, "work")
    )
    wait_until((markers / "worker.started").exists, "the worker handler to start")

    app.send(signum)
    app.wait_for_line(STOPPING.format(signal=signum.name))

    # shutdown_timeout is 20s: the process waits for the handler, which waits for the release file.
    assert app.running(), app.stderr
    assert app.matching(SUMMARY.format(id="worker")) == []
    assert not (markers / "worker.finished").exists()
    (markers / RELEASE).touch()

    assert app.wait_exit(timeout=10) == 0, app.stderr
    assert (markers / "worker.finished").exists()
    [summary] = app.matching(SUMMARY.format(id="worker"))
    assert (summary["processed"], summary["failed"], summary["released"]) == ("1", "0", "0")
    assert app.lines[-1].endswith("listeners: stopped"), app.stderr


def test_async_handler_outliving_the_shutdown_timeout_is_cancelled_and_its_message_released(
    start_cli: StartCli, markers: Path, marker_env: dict[str, str]
) -> None:
    app = start_cli(
        "run",
        "tests.cli.apps.jobs.app:make_container",
        *app_options("jobs"),
        "--profile",
        "short-drain",
        env=jobs_env(marker_env, "work"),
    )
    wait_until((markers / "worker.started").exists, "the worker handler to start")

    app.send(signal.SIGTERM)  # and never release the handler

    assert app.wait_exit(timeout=5) == 0, app.stderr
    assert app.matching(
        r"listener worker: 1 message\(s\) did not finish within the shutdown timeout; released uncommitted$"
    )
    [summary] = app.matching(SUMMARY.format(id="worker"))
    assert (summary["processed"], summary["released"]) == ("0", "1")
    assert app.lines[-1].endswith("listeners: stopped (some in-flight messages were released uncommitted)")
    assert not (markers / "worker.finished").exists()


@pytest.mark.slow
def test_sync_handler_outliving_the_shutdown_timeout_does_not_keep_the_process_alive(
    start_cli: StartCli, markers: Path, marker_env: dict[str, str]
) -> None:
    app = start_cli(
        "run",
        "tests.cli.apps.jobs.app:container",
        *app_options("jobs"),
        "--profile",
        "short-drain",
        env=jobs_env(marker_env, "sync-work"),
    )
    wait_until((markers / "sync-worker.started").exists, "the sync-worker handler to start")

    app.send(signal.SIGTERM)  # and never release the handler (it gives up after a minute)

    app.wait_for_line(r"listeners: stopped \(some in-flight messages were released uncommitted\)$")
    [summary] = app.matching(SUMMARY.format(id="sync-worker"))
    assert (summary["processed"], summary["released"]) == ("0", "1")
    assert app.wait_exit(timeout=5) == 0, app.stderr


def test_listener_summaries_are_logged_even_if_a_resource_fails_to_clean_up(
    start_cli: StartCli, marker_env: dict[str, str]
) -> None:
    app = start_cli(
        "run",
        "tests.cli.apps.jobs.app:container",
        *app_options("jobs"),
        env={**jobs_env(marker_env), FAIL_CLEANUP_ENV: "1"},
    )
    app.wait_for_line(r"listeners: 2 listener\(s\) running")

    app.send(signal.SIGTERM)

    app.wait_exit(timeout=10)  # 0 or 1: what matters here is what the operator gets to see
    assert "jobs clean-up failed on purpose" in app.stderr
    assert len(app.matching(SUMMARY.format(id="worker"))) == 1, app.stderr
    assert len(app.matching(SUMMARY.format(id="sync-worker"))) == 1, app.stderr


@pytest.mark.parametrize(
    ("first", "second"),
    [(signal.SIGTERM, signal.SIGINT), (signal.SIGINT, signal.SIGTERM)],
    ids=["SIGTERM-then-SIGINT", "SIGINT-then-SIGTERM"],
)
def test_second_signal_exits_at_once_with_128_plus_its_number(
    start_cli: StartCli,
    markers: Path,
    marker_env: dict[str, str],
    first: signal.Signals,
    second: signal.Signals,
) -> None:
    app = start_cli(
        "run",
        "tests.cli.apps.jobs.app:container",
        *app_options("jobs"),
        "--profile",
        "long-drain",
        env=jobs_env(marker_env, "work"),
    )
    wait_until((markers / "worker.started").exists, "the worker handler to start")
    app.send(first)
    app.wait_for_line(STOPPING.format(signal=first.name))

    app.send(second)

    # Well before the 60s shutdown timeout, and without draining: no summary, the handler never finished.
    assert app.wait_exit(timeout=10) == 128 + second.value, app.stderr
    assert app.lines[-1].endswith(f"listeners: second {second.name}: exiting now without draining")
    assert app.matching(SUMMARY.format(id="worker")) == []
    assert not (markers / "worker.finished").exists()


def test_startup_failure_on_an_unreachable_broker_exits_1_cleanly(
    start_cli: StartCli, markers: Path, marker_env: dict[str, str]
) -> None:
    app = start_cli(
        "run", "tests.cli.apps.unreachable.app:container", *app_options("unreachable"), env=marker_env
    )

    assert app.wait_exit(timeout=30) == 1, app.stderr
    errors = [line for line in app.lines if line.startswith("listeners: error:")]
    assert len(errors) == 1, app.stderr
    assert "kafka transport" in errors[0]
    assert app.lines[-1] == errors[0]
    assert "Traceback" not in app.stderr
    assert app.matching(r"listener \S+ started") == []
    # The app's publishing resource starts before the transports; if it started, it was shut down.
    started = (markers / "feeder.started").exists()
    assert (markers / "feeder.stopped").exists() == started


def test_startup_failure_is_reported_even_if_a_resource_fails_to_clean_up(
    start_cli: StartCli, marker_env: dict[str, str]
) -> None:
    app = start_cli(
        "run",
        "tests.cli.apps.unreachable.app:container",
        *app_options("unreachable"),
        env={**marker_env, FAIL_CLEANUP_ENV: "1"},
    )

    assert app.wait_exit(timeout=30) == 1, app.stderr
    [error] = [line for line in app.lines if line.startswith("listeners: error:")]
    assert "kafka transport" in error
