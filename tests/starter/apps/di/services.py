"""Services the DI test app injects."""

from __future__ import annotations


class Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[str, object]] = []

    def record(self, where: str, value: object) -> None:
        self.calls.append((where, value))


class Greeter:
    def greet(self, name: str) -> str:
        return f"hello {name}"
