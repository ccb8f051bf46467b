"""A consumer process killed with SIGKILL mid-stream: the next one resumes and nothing is lost."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer

from tests.contract.configs import unique
from tests.support.brokers import KafkaBroker
from tests.transports.kafka.helpers import create_topic

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[3]


def start(kafka: KafkaBroker, topic: str, group: str, record: Path, tmp: Path) -> subprocess.Popen[bytes]:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("LISTENERS")},
        "LISTENERS__KAFKA__BOOTSTRAP_SERVERS": kafka.bootstrap,
        "LISTENERS__KAFKA__CONSUMER": json.dumps(kafka.consumer),
        "LISTENERS__KAFKA__COMMIT_INTERVAL": "100ms",
        "LISTENERS__LISTENER__RECORDER__TOPICS": json.dumps([topic]),
        "LISTENERS__LISTENER__RECORDER__GROUP_ID": group,
        "RECORDER_FILE": str(record),
    }
    return subprocess.Popen(
        [sys.executable, "-m", "listeners", "run", "tests.transports.kafka.apps.recorder.app:container",
         "--app-dir", str(REPO), "--config-dir", str(tmp)],
        cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def wait_until(condition: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


async def test_sigkill_mid_stream_then_a_new_process_resumes_without_loss(
    kafka: KafkaBroker, tmp_path: Path
) -> None:
    topic, group = unique("killed"), unique("group")
    await create_topic(kafka, topic, 3)
    producer = AIOKafkaProducer(bootstrap_servers=kafka.bootstrap, enable_idempotence=False)
    await producer.start()
    try:
        futures = [await producer.send(topic, f"m{n}".encode(), key=str(n).encode()) for n in range(600)]
        for future in futures:
            await future
    finally:
        await producer.stop()
    record = tmp_path / "handled.txt"
    first = start(kafka, topic, group, record, tmp_path)
    try:
        wait_until(lambda: len(lines(record)) >= 150, 30, "the first process to handle 150 records")
        first.send_signal(signal.SIGKILL)
        first.wait(10)
        killed_at = len(lines(record))
        second = start(kafka, topic, group, record, tmp_path)
        try:
            wait_until(lambda: {line.split()[0] for line in lines(record)} >= {f"m{n}" for n in range(600)},
                       60, "every record handled")  # fmt: skip
        finally:
            second.send_signal(signal.SIGTERM)
            assert second.wait(20) == 0
    finally:
        if first.poll() is None:
            first.kill()
    handled = Counter(line.split()[0] for line in lines(record))
    assert set(handled) == {f"m{n}" for n in range(600)}, "nothing lost"
    duplicates = sum(count - 1 for count in handled.values())
    # At-least-once: only records handled after the last commit before the kill may run twice.
    assert duplicates < killed_at, f"{duplicates} duplicates after {killed_at} records before the kill"
