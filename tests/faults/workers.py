"""Worker processes for fault scenarios: ``python -m listeners run`` of a test app, under control.

Each worker runs with the test's environment minus every ``LISTENERS*`` variable, plus the given
overrides, an empty config folder, and stdout/stderr going to its own log file (the tail of every
worker's log is attached to a failing test's report by ``tests/faults/conftest.py``).
:class:`Workers` (the ``workers`` fixture) kills whatever is still running when the test ends.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


class WorkerExited(AssertionError):
    """A worker exited while the test still needed it."""


class Worker:
    """One ``listeners run`` process."""

    def __init__(self, name: str, process: subprocess.Popen[bytes], log: Path) -> None:
        self.name = name
        self.process = process
        self.log = log

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def running(self) -> bool:
        return self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL: no drain, no commit, no goodbye."""
        self._signal(signal.SIGKILL)

    def terminate(self) -> None:
        """SIGTERM: the graceful stop."""
        self._signal(signal.SIGTERM)

    def stop(self) -> None:
        """SIGSTOP: frozen, sockets open (the broker sees a member that stopped talking)."""
        self._signal(signal.SIGSTOP)

    def cont(self) -> None:
        """SIGCONT after :meth:`stop`."""
        self._signal(signal.SIGCONT)

    def wait(self, timeout: float) -> int:
        """Wait for the exit; its code (``-signal`` when killed by one). Fails with the log's tail."""
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"worker {self.name} (pid {self.pid}) still running after {timeout}s; its log:\n{self.tail()}"
            ) from None

    def check_running(self) -> None:
        """Raise :class:`WorkerExited`, with the log's tail, if the worker is gone."""
        code = self.process.poll()
        if code is not None:
            raise WorkerExited(f"worker {self.name} exited with {code}; its log:\n{self.tail()}")

    def logged(self, text: str) -> bool:
        return text in self.output()

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def tail(self, lines: int = 40) -> str:
        return "\n".join(self.output().splitlines()[-lines:])

    def _signal(self, signum: signal.Signals) -> None:
        if self.running:
            self.process.send_signal(signum)


class Workers:
    """Starts workers for one test and cleans them all up."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.started: list[Worker] = []
        self.config_dir = directory / "config"
        self.config_dir.mkdir(parents=True, exist_ok=True)

    def start(self, target: str, env: dict[str, str], name: str | None = None) -> Worker:
        """Run ``python -m listeners run <target>`` (``module:attribute``) with ``env`` added."""
        name = name or f"worker-{len(self.started) + 1}"
        log = self.directory / f"{name}.log"
        environ = {key: value for key, value in os.environ.items() if not key.startswith("LISTENERS")}
        environ.update(env)
        command = [
            sys.executable, "-m", "listeners", "run", target,
            "--app-dir", str(REPO), "--config-dir", str(self.config_dir),
        ]  # fmt: skip
        with log.open("wb") as output:
            process = subprocess.Popen(
                command, cwd=REPO, env=environ, stdout=output, stderr=subprocess.STDOUT
            )
        worker = Worker(name, process, log)
        self.started.append(worker)
        return worker

    def cleanup(self) -> None:
        """Kill every worker still running (a stopped one too) and reap it."""
        for worker in self.started:
            if worker.running:
                worker.cont()
                worker.kill()
        deadline = time.monotonic() + 10
        for worker in self.started:
            with contextlib.suppress(subprocess.TimeoutExpired):
                worker.process.wait(max(0.1, deadline - time.monotonic()))

    def report(self, lines: int = 40) -> str:
        """The tail of every worker's log, for a failing test's report."""
        parts = []
        for worker in self.started:
            code = worker.process.poll()
            state = "running" if code is None else f"exit {code}"
            parts.append(
                f"--- {worker.name} (pid {worker.pid}, {state}) {worker.log} ---\n{worker.tail(lines)}"
            )
        return "\n".join(parts)
