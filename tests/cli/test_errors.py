"""Bad targets and bad configuration: exit 1 with ``listeners: error: <reason>``, never a traceback."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.cli.helpers import REPO_ROOT, app_options, run_cli

COMMANDS = pytest.mark.parametrize("command", ["run", "list"])
JOBS = app_options("jobs")


def error_line(result: subprocess.CompletedProcess[str]) -> str:
    """The one ``listeners: error:`` line a failed startup prints, after checking the rest of the run."""
    assert result.returncode == 1, result.stderr
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("listeners: error: ")
    return lines[0].removeprefix("listeners: error: ")


@COMMANDS
@pytest.mark.parametrize(
    ("target", "expected"),
    [
        pytest.param(
            "samples.orders.app",
            "'samples.orders.app' is not an import string; use module:attribute, e.g. app:container",
            id="no-colon",
        ),
        pytest.param(
            "nope.app:container",
            f"cannot import module 'nope.app': no such module (app dir {REPO_ROOT})",
            id="missing-module",
        ),
        pytest.param(
            "samples.orders.app:nothing",
            "module 'samples.orders.app' has no attribute 'nothing'",
            id="missing-attribute",
        ),
        pytest.param(
            "samples.orders.models:OrderPlaced",
            "samples.orders.models:OrderPlaced is ModelMetaclass, not a dependency-injector container",
            id="a-class-that-is-not-a-container",
        ),
        pytest.param(
            "tests.cli.apps.jobs.app:make_nothing",
            "tests.cli.apps.jobs.app:make_nothing is int, not a dependency-injector container",
            id="factory-returning-no-container",
        ),
        pytest.param(
            "tests.cli.apps.jobs.app:plain_container",
            "tests.cli.apps.jobs.app:plain_container is not a ListenersContainer; "
            "subclass starter.ListenersContainer",
            id="container-that-is-not-a-listeners-container",
        ),
    ],
)
def test_bad_target_names_what_is_wrong(command: str, target: str, expected: str) -> None:
    assert error_line(run_cli(command, target, *JOBS)) == expected


@COMMANDS
def test_module_failing_at_import_is_named_with_its_exception(command: str) -> None:
    reason = error_line(run_cli(command, "tests.cli.apps.broken.app:container", *JOBS))

    assert reason.startswith(
        "importing module 'tests.cli.apps.broken.app' failed: RuntimeError: broken on purpose at import ("
    )
    assert f"{REPO_ROOT / 'tests/cli/apps/broken/app.py'}:" in reason


@COMMANDS
def test_container_factory_that_raises_is_named_with_its_exception(command: str) -> None:
    reason = error_line(run_cli(command, "tests.cli.apps.jobs.app:make_failing", *JOBS))

    assert "tests.cli.apps.jobs.app:make_failing" in reason
    assert "RuntimeError: factory broken on purpose" in reason


def run_jobs_app(command: str, config_dir: Path) -> subprocess.CompletedProcess[str]:
    return run_cli(
        command,
        "tests.cli.apps.jobs.app:container",
        "--app-dir",
        str(REPO_ROOT),
        "--config-dir",
        str(config_dir),
    )


def write_config(directory: Path, text: str) -> Path:
    directory.mkdir()
    config = directory / "application.yaml"
    config.write_text(text, encoding="utf-8")
    return config


@COMMANDS
@pytest.mark.parametrize(
    ("yaml_text", "expected"),
    [
        pytest.param(
            "listeners: {kafak: {}}\n",
            "file {config}: listeners.kafak: unknown key (did you mean 'kafka'?)",
            id="unknown-key",
        ),
        pytest.param(
            "listeners:\n  shutdown_timeout: soon\n",
            "file {config}: listeners.shutdown_timeout: invalid duration 'soon': "
            "use a number of seconds or e.g. 250ms, 30s, 5m, 2h, 7d",
            id="invalid-value",
        ),
    ],
)
def test_invalid_config_names_the_file_the_key_and_the_reason(
    command: str, tmp_path: Path, yaml_text: str, expected: str
) -> None:
    config = write_config(tmp_path / "config", yaml_text)

    result = run_jobs_app(command, config_dir=config.parent)

    # One line per invalid key, under a first line saying the configuration is invalid.
    assert result.returncode == 1, result.stderr
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        "listeners: error: invalid configuration",
        expected.format(config=config),
    ]


@COMMANDS
def test_invalid_yaml_names_the_file_and_the_position(command: str, tmp_path: Path) -> None:
    config = write_config(tmp_path / "config", "listeners:\n  kafka: [memory://\n")

    result = run_jobs_app(command, config_dir=config.parent)

    assert error_line(result).startswith(f"invalid YAML in {config} at line ")


@COMMANDS
def test_missing_config_dir_is_named(command: str, tmp_path: Path) -> None:
    missing = tmp_path / "no-such-config"

    result = run_jobs_app(command, config_dir=missing)

    assert error_line(result) == f"config directory {str(missing)!r} does not exist"
