"""``python -m listeners`` and the ``listeners`` script describe their commands."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.cli.helpers import REPO_ROOT, cli_env, run_cli


def test_module_help_lists_run_and_list() -> None:
    result = run_cli("--help")

    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("Usage: listeners [OPTIONS] COMMAND [ARGS]...")
    commands = result.stdout.split("Commands:", 1)[1].split()
    assert "run" in commands
    assert "list" in commands


def test_run_help_shows_its_options() -> None:
    result = run_cli("run", "--help")

    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("Usage: listeners run [OPTIONS] MODULE:ATTR")
    for option in ("--profile", "--config-dir", "--app-dir", "--log-level"):
        assert option in result.stdout


def test_console_script_is_the_same_command() -> None:
    script = Path(sys.executable).parent / "listeners"

    result = subprocess.run(
        [str(script), "list", "--help"],
        cwd=REPO_ROOT,
        env=cli_env(),
        capture_output=True,
        text=True,
        check=False,
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("Usage: listeners list [OPTIONS] MODULE:ATTR")
