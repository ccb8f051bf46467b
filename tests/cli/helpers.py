"""Running the real ``listeners`` command in a subprocess and watching what it writes to stderr."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
APPS = REPO_ROOT / "tests" / "cli" / "apps"
CLI = (sys.executable, "-m", "listeners")


def cli_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The test's environment without any ``LISTENERS...`` variable of the machine, plus ``extra``."""
    env = {name: value for name, value in os.environ.items() if not name.upper().startswith("LISTENERS")}
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra or {})
    return env


def app_options(app: str) -> list[str]:
    """``--app-dir`` and ``--config-dir`` of a test app in ``tests/cli/apps/<app>``."""
    return ["--app-dir", str(REPO_ROOT), "--config-dir", str(APPS / app / "config")]


def run_cli(
    *args: str, env: Mapping[str, str] | None = None, timeout: float = 20.0
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m listeners *args`` from the repository root to completion."""
    return subprocess.run(
        [*CLI, *args],
        cwd=REPO_ROOT,
        env=cli_env(env),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def wait_until(condition: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    """Poll ``condition`` until it holds; fail naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.01)


class CliProcess:
    """A running ``listeners`` command whose stderr is read line by line in a background thread."""

    def __init__(self, args: list[str], env: Mapping[str, str] | None = None) -> None:
        self.args = args
        self.process = subprocess.Popen(
            [*CLI, *args],
            cwd=REPO_ROOT,
            env=cli_env(env),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            bufsize=1,
        )
        self._lines: list[str] = []
        self._changed = threading.Condition()
        self._eof = False
        self._reader = threading.Thread(target=self._read_stderr, name="cli-stderr", daemon=True)
        self._reader.start()

    def _read_stderr(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            with self._changed:
                self._lines.append(line.rstrip("\n"))
                self._changed.notify_all()
        with self._changed:
            self._eof = True
            self._changed.notify_all()

    @property
    def lines(self) -> list[str]:
        """Every stderr line read so far."""
        with self._changed:
            return list(self._lines)

    @property
    def stderr(self) -> str:
        return "\n".join(self.lines)

    def matching(self, pattern: str) -> list[re.Match[str]]:
        """Matches of ``pattern`` (searched) in the stderr lines read so far, in order."""
        regex = re.compile(pattern)
        return [match for line in self.lines if (match := regex.search(line)) is not None]

    def wait_for_line(self, pattern: str, timeout: float = 10.0) -> re.Match[str]:
        """The first stderr line matching ``pattern``; fails if the process ends or time runs out first."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for line in self._lines:
                    if (match := regex.search(line)) is not None:
                        return match
                if self._eof:
                    self.process.wait()
                    pytest.fail(
                        f"listeners exited with {self.process.returncode} before printing a line "
                        f"matching {pattern!r}; stderr:\n{self._text()}"
                    )
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    pytest.fail(
                        f"no stderr line matched {pattern!r} within {timeout}s; stderr:\n{self._text()}"
                    )
                self._changed.wait(remaining)

    def _text(self) -> str:
        return "\n".join(self._lines)

    def send(self, signum: signal.Signals) -> None:
        self.process.send_signal(signum)

    def running(self) -> bool:
        return self.process.poll() is None

    def wait_exit(self, timeout: float) -> int:
        """The exit code, once the process has ended and all of its stderr is read."""
        try:
            code = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"listeners still running {timeout}s later; stderr so far:\n{self.stderr}")
        self._reader.join(5.0)
        return code

    def kill(self) -> None:
        """Kill the process if it is still running (test teardown)."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10.0)
        self._reader.join(5.0)
        if self.process.stderr is not None:
            self.process.stderr.close()


@dataclass
class ListedListener:
    """One listener of ``listeners list``: its kind, handler and ``path -> (value, source)`` rows."""

    kind: str
    handler: str
    rows: dict[str, tuple[str, str]] = field(default_factory=dict)


_HEADER = re.compile(r"^(?P<id>\S+)  \[(?P<kind>\w+)\]  (?P<handler>\S+)$")
_ROW = re.compile(r"^  (?P<path>\S+)\s+(?P<value>\S+(?: \S+)*)\s{2,}(?P<source>\S.*)$")


def parse_listing(text: str) -> tuple[dict[str, str], dict[str, ListedListener]]:
    """The ``key: value`` header lines and the listeners, by id, of ``listeners list`` output."""
    header: dict[str, str] = {}
    listed: dict[str, ListedListener] = {}
    current: ListedListener | None = None
    for line in text.splitlines():
        if not line.strip():
            current = None
        elif current is None and (match := _HEADER.match(line)):
            current = listed[match["id"]] = ListedListener(match["kind"], match["handler"])
        elif current is not None and (match := _ROW.match(line)):
            current.rows[match["path"]] = (match["value"], match["source"])
        elif current is None and ": " in line:
            key, value = line.split(": ", 1)
            header[key] = value
    return header, listed


StartCli = Callable[..., CliProcess]
"""The ``start_cli`` fixture: ``start_cli(*args, env=...)`` starts ``python -m listeners *args``."""
