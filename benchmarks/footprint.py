"""Footprint cases: startup time, idle RSS with many listeners, RSS under a sustained overload.

``python -m benchmarks.footprint --case startup|idle-rss|overload-rss --bootstrap X ...`` runs one case
and prints one JSON line. Each case starts a real application process,
``python -m listeners run benchmarks.footprint:<factory>`` (an empty config folder; brokers, topics
and queues given by environment variables, as a deployment would), and measures it from outside:

- ``startup``: one Kafka listener on a topic that already holds a record. Timed from the launch
  (``Popen``) to the handler's marker line on stdout; the handler also prints its own time since the
  process started (from ``/proc/self/stat``), and the ``N listener(s) running`` log line is timed as
  "started". The app is then stopped with SIGTERM and must exit 0.
- ``idle-rss``: Kafka and RabbitMQ listeners (10 + 10 by default) on their own topics and queues; once
  ``/health/ready`` answers 200 (every listener consuming), idle for a few seconds while VmRSS is
  sampled every 0.5 s; reports the last sample, VmHWM (peak) and the CPU used while idle.
- ``overload-rss``: one Kafka listener whose handler awaits ``--handler-ms`` per record (partition
  ordering, the default ``max_in_flight``), fed ``--factor`` times faster than it can handle for
  ``--seconds``; VmRSS sampled every 0.5 s. Reports RSS when ready, at the start of the overload, its
  max and at the end, the growth and slope over the second half, records handled and the backlog.

The factories (``startup_app``, ``idle_app``, ``overload_app``) read ``FOOTPRINT_*`` variables. The
apps import this module, so it imports at the top only the standard library (the measuring side's
modules add about 0.2 MB and 5 modules to what ``listeners run`` loads anyway) and what an application
would; the producer and the test helpers are imported where the measuring side uses them.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dependency_injector import providers

from benchmarks.payload import OrderPlaced
from benchmarks.suite import ROOT
from listeners import kafka_listener, rabbit_listener
from starter import ListenersContainer

FIRST_MARK = "FOOTPRINT-FIRST"
"""What the startup app prints on stdout when it handled its first record."""
LOADED_MARK = "FOOTPRINT-LOADED"
"""What every app prints when its factory is called (the CLI and the app module are imported)."""
RUNNING = re.compile(r"(\d+) listener\(s\) running")
STARTED = re.compile(r"listener (\S+) started: ")
STOPPED = re.compile(r"listener (\S+) stopped: processed=(\d+)")
MB = 1024.0
SAMPLE_EVERY = 0.5
"""Seconds between RSS samples."""


def since_process_start() -> float:
    """Seconds since this process was forked (``/proc/self/stat`` start time, clock-tick resolution)."""
    fields = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
    started = int(fields[19]) / os.sysconf("SC_CLK_TCK")  # field 22: starttime, ticks after boot
    return time.clock_gettime(time.CLOCK_BOOTTIME) - started


def _loaded() -> None:
    print(f"{LOADED_MARK} {since_process_start():.4f}", flush=True)


# --- the applications (run by ``listeners run benchmarks.footprint:<factory>``) -----------------------


def startup_app() -> ListenersContainer:
    """One Kafka listener on ``FOOTPRINT_TOPIC`` (group ``FOOTPRINT_GROUP``) that prints a marker line
    with its own time since process start when it handled the first record."""
    _loaded()
    topic, group = os.environ["FOOTPRINT_TOPIC"], os.environ["FOOTPRINT_GROUP"]

    class FirstOrder:
        def __init__(self) -> None:
            self.handled = 0

        @kafka_listener(topic, id="footprint-startup", group_id=group)
        async def on_order(self, order: OrderPlaced) -> None:
            self.handled += 1
            if self.handled == 1:
                print(f"{FIRST_MARK} {since_process_start():.4f} {order.order_id}", flush=True)

    class StartupContainer(ListenersContainer):
        first_order = providers.Singleton(FirstOrder)

    return StartupContainer()


def _idle_handler(name: str, declare: Callable[[Any], Any]) -> Callable[..., Any]:
    """A fresh handler method ``IdleHandlers.<name>`` (listeners recognise methods by qualified name)."""

    async def on_order(self: Any, order: OrderPlaced) -> None:
        return None

    on_order.__name__, on_order.__qualname__ = name, f"IdleHandlers.{name}"
    return declare(on_order)  # type: ignore[no-any-return]


def idle_app() -> ListenersContainer:
    """A Kafka listener per topic in ``FOOTPRINT_TOPICS`` (JSON list; group ``<topic>-group``) and a
    RabbitMQ listener per queue in ``FOOTPRINT_QUEUES`` (JSON list), each its own handler."""
    _loaded()
    topics: list[str] = json.loads(os.environ.get("FOOTPRINT_TOPICS", "[]"))
    queues: list[str] = json.loads(os.environ.get("FOOTPRINT_QUEUES", "[]"))
    handlers = {
        f"on_kafka_{n}": _idle_handler(
            f"on_kafka_{n}", kafka_listener(topic, id=f"kafka-{n}", group_id=f"{topic}-group")
        )
        for n, topic in enumerate(topics)
    } | {
        f"on_rabbit_{n}": _idle_handler(f"on_rabbit_{n}", rabbit_listener(queue, id=f"rabbit-{n}"))
        for n, queue in enumerate(queues)
    }
    idle_handlers = type("IdleHandlers", (), handlers)

    class IdleContainer(ListenersContainer):
        idle_handlers_object = providers.Singleton(idle_handlers)

    return IdleContainer()


def overload_app() -> ListenersContainer:
    """One Kafka listener on ``FOOTPRINT_TOPIC`` whose handler awaits ``FOOTPRINT_HANDLER_MS`` per record."""
    _loaded()
    topic, group = os.environ["FOOTPRINT_TOPIC"], os.environ["FOOTPRINT_GROUP"]
    pause = float(os.environ["FOOTPRINT_HANDLER_MS"]) / 1000

    class SlowOrder:
        @kafka_listener(topic, id="footprint-overload", group_id=group)
        async def on_order(self, order: OrderPlaced) -> None:
            await asyncio.sleep(pause)

    class OverloadContainer(ListenersContainer):
        slow_order = providers.Singleton(SlowOrder)

    return OverloadContainer()


# --- the measuring side ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Line:
    at: float
    """Seconds after the launch when the line was read."""
    stream: str
    text: str


class AppProcess:
    """``python -m listeners run benchmarks.footprint:<factory>``, its output lines timed as they arrive."""

    def __init__(self, factory: str, env: dict[str, str], config_dir: Path) -> None:
        base = {name: value for name, value in os.environ.items() if not name.startswith("LISTENERS")}
        self._condition = threading.Condition()
        self.lines: list[Line] = []
        self.launched = time.perf_counter()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "listeners", "run", f"benchmarks.footprint:{factory}",
             "--app-dir", str(ROOT), "--config-dir", str(config_dir)],
            cwd=ROOT, env={**base, **env}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        self._readers = [
            threading.Thread(target=self._read, args=(name, stream), daemon=True)
            for name, stream in (("stdout", self.process.stdout), ("stderr", self.process.stderr))
        ]
        for reader in self._readers:
            reader.start()

    def _read(self, name: str, stream: Any) -> None:
        for text in stream:
            with self._condition:
                self.lines.append(Line(time.perf_counter() - self.launched, name, text.rstrip("\n")))
                self._condition.notify_all()
        with self._condition:
            self._condition.notify_all()

    def wait_for(
        self, stream: str, pattern: str | re.Pattern[str], timeout: float
    ) -> tuple[Line, re.Match[str]]:
        """The first line of ``stream`` matching ``pattern``; fails if the app exits or ``timeout`` passes."""
        compiled = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self._condition:
            while True:
                for line in self.lines:
                    if line.stream == stream and (match := compiled.search(line.text)):
                        return line, match
                if self.process.poll() is not None and not any(reader.is_alive() for reader in self._readers):
                    raise RuntimeError(f"the app exited ({self.process.returncode}):\n{self.tail()}")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(
                        f"no {compiled.pattern!r} on the app's {stream} in {timeout}s:\n{self.tail()}"
                    )
                self._condition.wait(min(left, 0.5))

    def matches(self, stream: str, pattern: re.Pattern[str]) -> list[re.Match[str]]:
        with self._condition:
            return [m for line in self.lines if line.stream == stream and (m := pattern.search(line.text))]

    def tail(self, count: int = 30) -> str:
        return "\n".join(f"  {line.stream}: {line.text}" for line in self.lines[-count:])

    def memory_mb(self) -> tuple[float, float]:
        """VmRSS and VmHWM (peak RSS) of the app, MB."""
        found = {}
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            name, _, value = line.partition(":")
            if name in ("VmRSS", "VmHWM"):
                found[name] = int(value.split()[0]) / MB
        return found["VmRSS"], found["VmHWM"]

    def cpu_s(self) -> float:
        """User + system CPU seconds the app used so far."""
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self, timeout: float) -> int:
        """SIGTERM, then wait for the drain and the exit; the exit code."""
        self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(timeout)
        for reader in self._readers:
            reader.join(5)
        return code

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)


@contextmanager
def app_process(factory: str, env: dict[str, str]) -> Iterator[AppProcess]:
    """The app started with an empty config folder; killed on the way out if still running."""
    with tempfile.TemporaryDirectory(prefix="listeners-footprint-") as config_dir:
        app = AppProcess(factory, env, Path(config_dir))
        try:
            yield app
        finally:
            app.kill()


def kafka_env(args: argparse.Namespace) -> dict[str, str]:
    return {
        "LISTENERS__KAFKA__BOOTSTRAP_SERVERS": args.bootstrap,
        "LISTENERS__KAFKA__CONSUMER": json.dumps(args.consumer_options),
    }


def server_env(port: int) -> dict[str, str]:
    return {"LISTENERS__SERVER__PORT": str(port), "LISTENERS__SERVER__HOST": "127.0.0.1"}


def wait_ready(app: AppProcess, port: int, timeout: float) -> float:
    """Poll ``/health/ready`` every 50 ms until it answers 200; seconds after the launch."""
    deadline = time.monotonic() + timeout
    answer = "no answer"
    while time.monotonic() < deadline:
        if app.process.poll() is not None:
            raise RuntimeError(f"the app exited ({app.process.returncode}) before ready:\n{app.tail()}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health/ready", timeout=2) as response:
                if response.status == 200:
                    return time.perf_counter() - app.launched
        except urllib.error.HTTPError as error:
            answer = f"{error.code} {error.read().decode(errors='replace')}"
        except OSError as error:
            answer = str(error)
        time.sleep(0.05)
    raise TimeoutError(f"/health/ready not 200 after {timeout}s (last: {answer}):\n{app.tail()}")


def free_port() -> int:
    from tests.support.brokers import free_port as pick

    return pick()


def stopped(app: AppProcess) -> dict[str, int]:
    """``{listener id: processed}`` from the app's stop summary lines."""
    return {match[1]: int(match[2]) for match in app.matches("stderr", STOPPED)}


def measure_startup(args: argparse.Namespace) -> dict[str, Any]:
    env = {**kafka_env(args), "FOOTPRINT_TOPIC": args.topic, "FOOTPRINT_GROUP": args.group}
    with app_process("startup_app", env) as app:
        first, found = app.wait_for("stdout", rf"{FIRST_MARK} (\S+) (\S+)", args.timeout)
        rss, hwm = app.memory_mb()
        cpu = app.cpu_s()
        loaded, loaded_match = app.wait_for("stdout", rf"{LOADED_MARK} (\S+)", 1)
        started, _ = app.wait_for("stderr", RUNNING, 1)
        code = app.stop(args.timeout)
    return {
        "case": "startup",
        "first_message_s": round(first.at, 3),
        "first_message_in_app_s": round(float(found[1]), 3),
        "loaded_s": round(loaded.at, 3),
        "loaded_in_app_s": round(float(loaded_match[1]), 3),
        "started_s": round(started.at, 3),
        "started_to_first_s": round(first.at - started.at, 3),
        "cpu_s_to_first": round(cpu, 3),
        "rss_at_first_mb": round(rss, 1),
        "first_order_id": found[2],
        "handled": stopped(app),
        "exit_code": code,
        # what every suite's summary reads: one message, timed from the launch
        "messages": 1,
        "seconds": round(first.at, 3),
        "msgs_per_s": 0.0,
        "cpu_s_per_1000": round(cpu * 1000, 1),
        "peak_rss_mb": round(hwm, 1),
        "config": {"consumer_options": args.consumer_options, "listeners": 1, "kafka_listeners": 1},
    }


def measure_idle(args: argparse.Namespace) -> dict[str, Any]:
    port = free_port()
    env = {
        **kafka_env(args),
        **server_env(port),
        "LISTENERS__RABBIT__URL": args.rabbit_url,
        "FOOTPRINT_TOPICS": json.dumps(args.topics),
        "FOOTPRINT_QUEUES": json.dumps(args.queues),
    }
    expected = len(args.topics) + len(args.queues)
    with app_process("idle_app", env) as app:
        ready = wait_ready(app, port, args.timeout)
        started = app.matches("stderr", STARTED)
        samples, cpu_before = [], app.cpu_s()
        idle_from = time.perf_counter()
        while (elapsed := time.perf_counter() - idle_from) < args.seconds:
            samples.append(app.memory_mb()[0])
            time.sleep(max(0.0, SAMPLE_EVERY * len(samples) - elapsed))
        rss, hwm = app.memory_mb()
        cpu_idle = app.cpu_s() - cpu_before
        idle_seconds = time.perf_counter() - idle_from
        code = app.stop(args.timeout)
    return {
        "case": "idle-rss",
        "listeners": expected,
        "started_listeners": len(started),
        "ready_s": round(ready, 3),
        "idle_s": round(idle_seconds, 2),
        "rss_mb": round(rss, 1),
        "rss_idle_min_mb": round(min(samples), 1),
        "rss_idle_max_mb": round(max(samples), 1),
        "hwm_mb": round(hwm, 1),
        "idle_cpu_percent": round(100 * cpu_idle / idle_seconds, 1),
        "handled": stopped(app),
        "exit_code": code,
        "messages": 0,
        "seconds": round(idle_seconds, 2),
        "msgs_per_s": 0.0,
        "cpu_s_per_1000": 0.0,
        "peak_rss_mb": round(hwm, 1),
        "config": {
            "kafka_listeners": len(args.topics),
            "rabbit_listeners": len(args.queues),
            "consumer_options": args.consumer_options,
            "server": "/health endpoints on (metrics off)",
        },
    }


async def _produce(
    args: argparse.Namespace,
    values: list[tuple[bytes, bytes]],
    rate: float,
    samples: list[tuple[float, float]],
    app: AppProcess,
) -> tuple[int, float]:
    """Send ``rate`` records a second (cycling through ``values``) for ``args.seconds`` while sampling
    the app's RSS; the number acknowledged and the seconds it took (until the last was acknowledged)."""
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(
        bootstrap_servers=args.bootstrap,
        acks=1,
        linger_ms=5,
        max_batch_size=256 * 1024,
        enable_idempotence=False,
    )
    await producer.start()
    loop = asyncio.get_running_loop()
    begin = loop.time()

    async def sample() -> None:
        while True:
            samples.append((loop.time() - begin, app.memory_mb()[0]))
            await asyncio.sleep(SAMPLE_EVERY * len(samples) - (loop.time() - begin))

    sampler = asyncio.create_task(sample())
    sent, acknowledged = 0, 0
    pending: list[asyncio.Future[Any]] = []
    try:
        total = round(rate * args.seconds)
        while sent < total:
            due = min(total, round((loop.time() - begin) * rate))
            while sent < due:
                key, value = values[sent % len(values)]
                pending.append(await producer.send(args.topic, value, key=key))
                sent += 1
            if len(pending) >= 5000:
                await asyncio.gather(*pending)
                acknowledged += len(pending)
                pending.clear()
            await asyncio.sleep(0.005)
        await asyncio.gather(*pending)
        acknowledged += len(pending)
        took = loop.time() - begin
        await asyncio.sleep(max(0.0, SAMPLE_EVERY * len(samples) - took))  # one more sample at the end
    finally:
        sampler.cancel()
        await producer.stop()
    return acknowledged, took


def second_half(samples: list[tuple[float, float]], seconds: float) -> tuple[float, float]:
    """RSS growth over the overload's second half (median of the last 3 samples minus the median of the
    3 samples around the midpoint) and the least-squares slope there, MB per 10 s."""
    import statistics

    half = [(at, rss) for at, rss in samples if at >= seconds / 2]
    middle = min(range(len(samples)), key=lambda n: abs(samples[n][0] - seconds / 2))
    around = [rss for _, rss in samples[max(0, middle - 1) : middle + 2]]
    growth = statistics.median(rss for _, rss in samples[-3:]) - statistics.median(around)
    slope = statistics.linear_regression([at for at, _ in half], [rss for _, rss in half]).slope
    return growth, slope * 10


def measure_overload(args: argparse.Namespace) -> dict[str, Any]:
    port = free_port()
    env = {
        **kafka_env(args),
        **server_env(port),
        "FOOTPRINT_TOPIC": args.topic,
        "FOOTPRINT_GROUP": args.group,
        "FOOTPRINT_HANDLER_MS": str(args.handler_ms),
    }
    if args.max_in_flight is not None:
        env["LISTENERS__LISTENER__FOOTPRINT_OVERLOAD__MAX_IN_FLIGHT"] = str(args.max_in_flight)
    from benchmarks.payload import payload

    values = [payload(index) for index in range(1000)]
    record_bytes = sum(len(key) + len(value) for key, value in values) / len(values)
    capacity = args.partitions * 1000 / args.handler_ms
    rate = args.factor * capacity
    samples: list[tuple[float, float]] = []
    with app_process("overload_app", env) as app:
        wait_ready(app, port, args.timeout)
        rss_ready, _ = app.memory_mb()
        cpu_before = app.cpu_s()
        produce_from = time.perf_counter()
        produced, produce_s = asyncio.run(_produce(args, values, rate, samples, app))
        _, hwm = app.memory_mb()
        cpu = app.cpu_s() - cpu_before
        stop_at = time.perf_counter() - produce_from
        code = app.stop(args.timeout)
    handled = stopped(app).get("footprint-overload", 0)
    growth, slope = second_half(samples, args.seconds)
    at_start = next((rss for at, rss in samples if at >= 1.0), samples[-1][1])
    return {
        "case": "overload-rss",
        "produced": produced,
        "produce_rate": round(produced / produce_s, 1),
        "target_rate": round(rate, 1),
        "nominal_capacity": round(capacity, 1),
        "handled": handled,
        "handle_rate": round(handled / stop_at, 1),
        "overload": round((produced / produce_s) / max(handled / stop_at, 1e-9), 1),
        "backlog": produced - handled,
        "backlog_payload_mb": round((produced - handled) * record_bytes / MB / MB, 1),
        "rss_ready_mb": round(rss_ready, 1),
        "rss_start_mb": round(at_start, 1),
        "rss_max_mb": round(max(rss for _, rss in samples), 1),
        "rss_end_mb": round(samples[-1][1], 1),
        "second_half_growth_mb": round(growth, 1),
        "second_half_slope_mb_per_10s": round(slope, 2),
        "hwm_mb": round(hwm, 1),
        "samples": [[round(at, 2), round(rss, 1)] for at, rss in samples],
        "exit_code": code,
        "messages": handled,
        "seconds": round(stop_at, 2),
        "msgs_per_s": round(handled / stop_at, 1),
        "cpu_s_per_1000": round(cpu / max(handled, 1) * 1000, 5),
        "peak_rss_mb": round(hwm, 1),
        "config": {
            "handler": f"await asyncio.sleep({args.handler_ms / 1000:g})",
            "partitions": args.partitions,
            "ordering": "partition (default)",
            "max_in_flight": args.max_in_flight or "256 (default)",
            "factor": args.factor,
            "seconds": args.seconds,
            "consumer_options": args.consumer_options,
        },
    }


CASES: dict[str, Callable[[argparse.Namespace], dict[str, Any]]] = {
    "startup": measure_startup,
    "idle-rss": measure_idle,
    "overload-rss": measure_overload,
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.footprint", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--case", choices=sorted(CASES), required=True)
    parser.add_argument("--bootstrap", required=True, help="host:port of the Kafka broker")
    parser.add_argument("--topic", help="startup, overload-rss: the topic (startup: holding a record)")
    parser.add_argument("--group", help="startup, overload-rss: a new consumer group")
    parser.add_argument("--topics", type=json.loads, default=[], help="idle-rss: Kafka topics, JSON list")
    parser.add_argument("--queues", type=json.loads, default=[], help="idle-rss: RabbitMQ queues, JSON list")
    parser.add_argument("--rabbit-url", default="amqp://guest:guest@127.0.0.1:5672/", help="idle-rss")
    parser.add_argument(
        "--consumer-options", type=json.loads, default={}, help="AIOKafkaConsumer options, JSON"
    )
    parser.add_argument(
        "--seconds", type=float, default=5.0, help="idle-rss: idle time; overload-rss: overload"
    )
    parser.add_argument("--handler-ms", type=float, default=1.0, help="overload-rss: handler time per record")
    parser.add_argument("--factor", type=float, default=10.0, help="overload-rss: produce rate / capacity")
    parser.add_argument("--partitions", type=int, default=1, help="overload-rss: partitions of the topic")
    parser.add_argument(
        "--max-in-flight", type=int, help="overload-rss: the listener's (default: its default)"
    )
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for the app")
    return parser.parse_args(argv)


def main() -> None:
    args = parse_args()
    print(json.dumps(CASES[args.case](args)), flush=True)


if __name__ == "__main__":
    main()
