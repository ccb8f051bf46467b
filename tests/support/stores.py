"""Where the idempotency-store tests find Redis and PostgreSQL; a missing server fails the run loudly."""

from __future__ import annotations

import os
import socket
from urllib.parse import urlsplit

REDIS_ENV = "LISTENERS_TEST_REDIS_URL"
POSTGRES_ENV = "LISTENERS_TEST_POSTGRES_DSN"


def redis_url() -> str:
    return os.environ.get(REDIS_ENV, "redis://127.0.0.1:6379/0")


def postgres_dsn() -> str:
    return os.environ.get(POSTGRES_ENV, "postgresql://postgres@127.0.0.1:5432/test")


def check_reachable(name: str, url: str, default_port: int, how: str, env: str) -> None:
    """Fail (never skip) with how to start ``name`` when nothing listens at ``url``."""
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or default_port
    with socket.socket() as probe:
        probe.settimeout(2)
        if probe.connect_ex((host, port)) != 0:
            raise RuntimeError(f"{name} is not reachable at {host}:{port}: start it with {how}, or set {env}")
