"""What a result was measured on: CPU, cores, Python, library versions, broker."""

from __future__ import annotations

import os
import platform
from importlib import metadata
from pathlib import Path
from typing import Any

PACKAGES = ("listeners", "aiokafka", "pydantic", "dependency-injector")
"""The versions a Kafka result names."""

RABBIT_PACKAGES = ("listeners", "aio-pika", "aiormq", "pamqp", "pydantic", "dependency-injector")
"""The versions a RabbitMQ result names."""


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def versions(packages: tuple[str, ...] = PACKAGES) -> dict[str, str]:
    found = {}
    for package in packages:
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            found[package] = "not installed"
    return found


def machine_info(broker: str, packages: tuple[str, ...] = PACKAGES) -> dict[str, Any]:
    return {
        "cpu": cpu_model(),
        "cores": usable_cores(),
        "platform": platform.platform(),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "versions": versions(packages),
        "broker": broker,
        "load_average_at_start": [round(load, 2) for load in os.getloadavg()],
    }


def describe(info: dict[str, Any]) -> list[str]:
    """Header lines for the printed report."""
    packages = ", ".join(f"{name} {version}" for name, version in info["versions"].items())
    return [
        f"machine: {info['cpu']}, {info['cores']} cores, {info['platform']}",
        f"python:  {info['python']}; {packages}",
        f"broker:  {info['broker']}",
        f"load:    {info['load_average_at_start']} (1, 5, 15 min) at start; other work skews the results",
    ]
