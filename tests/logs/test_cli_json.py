"""``listeners run`` with ``listeners.logging.format: json``: every stderr line one JSON object, and the
sample handlers' lines carry the trace id of the message they handle."""

from __future__ import annotations

import json
import signal
from collections.abc import Iterator

import pytest

from tests.cli.helpers import REPO_ROOT, CliProcess


@pytest.fixture
def sample_app() -> Iterator[CliProcess]:
    env = {"LISTENERS__LOGGING__FORMAT": "json", "LISTENERS__TRACING__ENABLED": "true"}
    args = ["run", "samples.orders.app:container", "--profile", "local", "--app-dir", str(REPO_ROOT),
            "--config-dir", str(REPO_ROOT / "config")]  # fmt: skip
    process = CliProcess(args, env)
    yield process
    if process.running():
        process.process.kill()


def test_json_lines_with_the_trace_id_of_the_handled_message(sample_app: CliProcess) -> None:
    sample_app.wait_for_line(r'"logger": "samples\.orders", "message": "billed ')
    sample_app.send(signal.SIGTERM)
    assert sample_app.wait_exit(timeout=15) == 0, sample_app.stderr
    entries = [json.loads(line) for line in sample_app.lines]
    assert all({"time", "level", "logger", "message"} <= entry.keys() for entry in entries)
    billed = [entry for entry in entries if entry["message"].startswith("billed ")]
    assert billed
    assert all(len(entry["trace_id"]) == 32 for entry in billed)
    assert entries[-1]["message"] == "stopped"
